"""One build, several reporters: the console and any report files at once."""

from __future__ import annotations

from rlmake.model import Decision, Job, Outcome
from rlmake.reporters.base import Phase, Reporter


class FanOut:
    """Forwards every event to each reporter, in the order given.

    Every reporter hears every event even if an earlier one raises; the first
    exception is raised again once all have heard it (so a report file that
    cannot be written does not swallow the console's summary).

    """

    def __init__(self, *reporters: Reporter):
        self.reporters = tuple(reporters)

    @property
    def wants_every_job(self) -> bool:
        return any(reporter.wants_every_job for reporter in self.reporters)

    def phase_started(self, phase: Phase) -> None:
        self._forward("phase_started", phase)

    def build_started(self, total: int) -> None:
        self._forward("build_started", total)

    def job_started(self, job: Job, decision: Decision) -> None:
        self._forward("job_started", job, decision)

    def job_finished(self, outcome: Outcome) -> None:
        self._forward("job_finished", outcome)

    def warning(self, text: str) -> None:
        self._forward("warning", text)

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None:
        self._forward("build_finished", outcomes, elapsed)

    def _forward(self, event: str, *args, **kwargs) -> None:
        first: BaseException | None = None
        for reporter in self.reporters:
            try:
                getattr(reporter, event)(*args, **kwargs)
            except Exception as error:          # noqa: BLE001 - re-raised below
                if first is None:
                    first = error
        if first is not None:
            raise first
