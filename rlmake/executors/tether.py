"""Ties the commands a Dask worker runs to the worker's life.

Each command runs in a session of its own (so that a cancel reaches all it starts),
which also means that nothing stops it when the worker process is killed: it is
reparented and goes on writing while Dask runs the same job again elsewhere. Two
things prevent that; only the Dask path pays for them.

- `Tether`: beside each task, a watcher (`/bin/sh` reading a pipe) in a session of its
  own. The worker tells it the process group of the command that runs, and that it
  ended; the pipe's write end is held by the worker alone (close on exec), so when
  the worker dies, however, the watcher reads end of file and kills the group it
  was last told of. It is told of a group once the command has started, and that
  the command ended before the command is reaped, so that the group's id cannot
  have been given to another process meanwhile.
- `JobLock`: in shared mode, an exclusive flock on a file in the project's
  `.rlmake/dask/locks/`, named for the job, taken before the job runs and passed to
  its commands as an open descriptor: while any process of a copy of the job lives,
  a rerun of it waits. The worker releases it when the job ends, for leftover
  background processes too (a flock belongs to the open file, which they share).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import time
from typing import Callable

LOCKS_DIRECTORY = os.path.join(".rlmake", "dask", "locks")
_LOCK_POLL_SECONDS = 0.05

# The last line read names the group to kill; an empty one means none is running.
# `kill -KILL -N` and not `kill -KILL -- -N`: dash's kill takes no `--`.
_WATCHER = 'group=; while read -r line; do group=$line; done; [ -z "$group" ] || kill -KILL -"$group"'


class Tether:
    """A watcher that kills the command running for this task if this process dies."""

    def __init__(self):
        read_end, self._write_end = os.pipe()       # both close on exec (PEP 446)
        try:
            self._watcher = subprocess.Popen(
                ["/bin/sh", "-c", _WATCHER], stdin=read_end, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def arm(self, group: int) -> None:
        """The command leading process group `group` has started."""
        self._say(str(group))

    def disarm(self) -> None:
        """The command has ended (and is not reaped yet)."""
        self._say("")

    def close(self) -> None:
        """Let the watcher go; a command still armed is killed, as if this process died."""
        os.close(self._write_end)
        self._watcher.wait()

    def __enter__(self) -> "Tether":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _say(self, line: str) -> None:
        try:
            os.write(self._write_end, f"{line}\n".encode())
        except BrokenPipeError:
            pass                # someone killed the watcher: the command runs unguarded


def lock_path(project_dir: str, job_id: str) -> str:
    name = hashlib.sha256(job_id.encode()).hexdigest()[:32]
    return os.path.join(project_dir, LOCKS_DIRECTORY, name)


class JobLock:
    """An exclusive flock on one job's lock file; `fd` is to be passed to its commands."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def acquire(cls, path: str, cancelled: Callable[[], bool]) -> "JobLock | None":
        """Wait for the lock (None if `cancelled()` turns true first)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return cls(fd)
            except BlockingIOError:
                if cancelled():
                    os.close(fd)
                    return None
                time.sleep(_LOCK_POLL_SECONDS)
            except BaseException:
                os.close(fd)
                raise

    def release(self) -> None:
        """Unlock for every process holding the descriptor, then close it."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
