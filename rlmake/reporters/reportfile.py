"""What the report-file reporters (JSON, JUnit) share: job selection, output tails,
and writing a file so that no reader ever sees half of it."""

from __future__ import annotations

import os
import tempfile
import time

from rlmake.errors import RlmakeError
from rlmake.model import ExecutionStatus, Outcome, Status
from rlmake.reporters.base import SilentReporter

OUTPUT_TAIL_CHARS = 4000


def reported(outcomes: list[Outcome]) -> list[Outcome]:
    """The outcomes a report lists: jobs with commands (aggregates only gather deps)."""
    return [outcome for outcome in outcomes if outcome.job.commands]


def build_status(outcomes: list[Outcome]) -> str:
    """The build's ExecutionStatus value, as its jobs' outcomes show it."""
    if any(o.status is Status.LOST for o in outcomes):
        return ExecutionStatus.EXECUTOR_FAILED.value
    if any(o.status is Status.INTERRUPTED for o in outcomes):
        return ExecutionStatus.INTERRUPTED.value
    if any(o.status is Status.FAILED for o in outcomes):
        return ExecutionStatus.FAILED.value
    return ExecutionStatus.SUCCEEDED.value


def output_tail(outcome: Outcome, limit: int = OUTPUT_TAIL_CHARS) -> str:
    return outcome.output[-limit:]


def cache_source(outcome: Outcome) -> str | None:
    """Where a restored result came from; None until outcomes carry it."""
    return getattr(outcome, "cache_source", None)


def write_atomically(path: str, data: bytes, what: str = "the report",
                     make_parents: bool = True) -> None:
    """Write `data` to `path` through a temporary file beside it and os.replace, making
    its directory first unless `make_parents` is false.

    A problem becomes an RlmakeError (exit status 2) that names `what` and the file."""
    directory = os.path.dirname(path) or "."
    temp = None
    try:
        if make_parents:
            os.makedirs(directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                    dir=directory)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o666 & ~_UMASK)     # mkstemp makes 0600; give what open() would
        os.replace(temp, path)
        temp = None
    except OSError as error:
        raise RlmakeError(f"cannot write {what} {path}: {error.strerror or error}") from None
    finally:
        if temp is not None:
            try:
                os.remove(temp)
            except OSError:
                pass


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()              # read once, at import, before any build starts threads


class ReportFile(SilentReporter):
    """A file written once, when the build finishes; subclasses say what goes in it."""

    wants_every_job = True      # an up-to-date build still lists every job

    def __init__(self, path: str):
        self.path = os.path.abspath(path)       # as named where rlmake was started
        self.started: float | None = None

    def build_started(self, total: int) -> None:
        self.started = time.time()

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None:
        started = self.started if self.started is not None else time.time() - elapsed
        write_atomically(self.path, self.render(outcomes, elapsed, started))

    def render(self, outcomes: list[Outcome], elapsed: float, started: float) -> bytes:
        raise NotImplementedError
