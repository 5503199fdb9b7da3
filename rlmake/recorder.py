"""The build's records: each finished run, written in batches, and the build's own row.

A run is recorded only after its job succeeded and its outputs were hashed; the
rows are committed every half second and at the end, so a crash loses at most
the last few records, whose jobs the next build runs again. A failure is
committed at once.
"""

from __future__ import annotations

from collections import Counter

from rlmake.clock import Clock
from rlmake.model import DirIdentity, ExecutionStatus, Outcome, RunRecord, Status
from rlmake.state import CacheUse, StateDB

_COMMIT_EVERY_SECONDS = 0.5
OUTPUT_TAIL_BYTES = 4000


class Recorder:
    def __init__(self, state: StateDB, execution: str, clock: Clock):
        self.state = state
        self.execution = execution
        self.clock = clock
        self._last_commit = clock.monotonic()

    def start(self, argv: list[str]) -> None:
        self.state.start_execution(self.execution, self.clock.time(), argv)

    def record(self, run: RunRecord) -> None:
        """A failure is committed at once: the forgotten record is what makes every later
        build run the job (its command may have cut a side file short), and a crash while
        other jobs run must not bring it back."""
        self.state.record_run(run)
        failed = run.status is Status.FAILED
        if failed:
            self.state.job_failed(run.target)
        if failed or self.clock.monotonic() - self._last_commit > _COMMIT_EVERY_SECONDS:
            self.state.commit()
            self._last_commit = self.clock.monotonic()

    def unfinished(self) -> set[str]:
        """The jobs whose last run failed or was stopped unfinished, not run to success
        since: they must run, not be restored."""
        return self.state.unfinished()

    def finished(self, target: str) -> None:
        """A job that `unfinished` named has run and succeeded."""
        self.state.finished(target)

    def made_dirs(self, made: list[tuple[str, DirIdentity]]) -> None:
        if made:
            self.state.made_dirs(made)

    def last_seconds(self, targets: list[str]) -> dict[str, float]:
        """How long each target's last successful run took, for those that ran before."""
        return self.state.last_durations(targets)

    def wrote(self, target: str, path: str, digest: str) -> bool:
        """Whether a successful run of the job `target` wrote `digest` to `path`."""
        return self.state.wrote(target, path, digest)

    def finish(self, outcomes: list[Outcome], unreported: int, status: ExecutionStatus,
               cache: CacheUse | None) -> None:
        kept = [(o.job.target, o.kept_by) for o in outcomes if o.kept_by]
        if kept:
            self.state.record_kept(self.execution, kept)
        counts = Counter(o.status for o in outcomes if o.job.commands)
        if status is ExecutionStatus.EXECUTOR_FAILED:
            # stored as failed: the rlmake that reads the records may be an older one,
            # which knows only the first four; the report files say which failure it was
            status = ExecutionStatus.FAILED
        self.state.finish_execution(self.execution, self.clock.time(), status,
                                    counts[Status.DONE], counts[Status.CACHED] + unreported,
                                    counts[Status.FAILED], cache)
