"""The events a build emits, in the order it emits them."""

from __future__ import annotations

from typing import Protocol

from rlmake.model import Decision, Job, Outcome


class Reporter(Protocol):
    # True: a build that finds everything up to date at once still reports every job
    # (as cached), which costs reading the plan's jobs; a plain no-op says one line.
    wants_every_job: bool

    def build_started(self, total: int) -> None:
        """`total`: the jobs with commands that this build will consider."""

    def job_started(self, job: Job, decision: Decision) -> None: ...

    def job_finished(self, outcome: Outcome) -> None:
        """Every considered job ends here once: done, cached, failed, skipped or would-run."""

    def warning(self, text: str) -> None: ...

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None: ...


class SilentReporter:
    """For surveys (`why`) and the Python API: hears every event, says nothing."""

    wants_every_job = False

    def build_started(self, total: int) -> None:
        pass

    def job_started(self, job: Job, decision: Decision) -> None:
        pass

    def job_finished(self, outcome: Outcome) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None:
        pass
