"""The events a build emits, in the order it emits them."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from rlmake.model import Decision, Job, Outcome


class Phase(Enum):
    """rlmake's own work in a build, in the order it is done; a trace draws each one."""

    PLAN = "load the plan"              # the Rulesfile, or the stored plan
    DECIDE = "decide what is stale"
    RUN = "run"
    RECORD = "record"


class Reporter(Protocol):
    # True: a build that finds everything up to date at once still reports every job
    # (as cached), which costs reading the plan's jobs; a plain no-op says one line.
    wants_every_job: bool

    def phase_started(self, phase: Phase) -> None:
        """rlmake begins `phase`; it lasts until the next phase or the build's end."""

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

    def phase_started(self, phase: Phase) -> None:
        pass

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
