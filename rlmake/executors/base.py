"""The executor protocol: start a task, wait for any started task to finish.

The scheduler owns everything else (staleness, outputs, records), so an
executor only has to run shell commands somewhere and say how they ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from rlmake.model import StoredBy


# NamedTuples, not dataclasses: built once per job, and cheaper to import and to build.
class Task(NamedTuple):
    """The commands of one job, to run in order in `cwd`, stopping at the first failure."""

    id: str
    commands: tuple[str, ...]
    cwd: str
    env: dict[str, str] | None = None       # added to the inherited environment
    make_dirs: tuple[str, ...] = ()         # directories to create first
    cache_key: str | None = None            # look the job up in the artifact cache first
    outputs: tuple[str, ...] = ()           # what a cache hit must restore
    inputs: tuple[tuple[str, str], ...] = ()    # (path, digest) of the files it reads, for
                                                # executors that stage files to other machines
    depfile: str | None = None              # written by the command; staged back like outputs


class Completion(NamedTuple):
    id: str
    exit_code: int
    output: bytes
    started: float
    ended: float
    failed_command: str | None = None
    error: str | None = None                # the executor could not run the task at all
    restored_from: str | None = None        # a cache hit: the store's name; nothing ran
    depfile_deps: dict[str, str | None] | None = None   # a cache hit's recorded depfile deps
    stored_by: StoredBy | None = None       # a cache hit: who stored it, as its record says
    looked_up: tuple[float, float] | None = None    # a miss: when the cache was asked first


class Executor(Protocol):
    def start(self, task: Task) -> None:
        """Begin running `task`; never blocks for long."""

    def wait(self, timeout: float | None = None) -> Completion | None:
        """Block until one started task has finished and return how it ended
        (None if `timeout` seconds passed first). Raises errors.ExecutorLost once the
        executor can run nothing any more (a Dask scheduler that went away)."""

    def cancel(self) -> None:
        """Stop every running task (Ctrl-C); `wait` then returns their completions."""

    def close(self) -> None:
        """Release workers; called once at the end of a build."""
