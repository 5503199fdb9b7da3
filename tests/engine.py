"""In-process builds for engine tests: the real Project, scheduler, state database and
files in a temporary directory; the fake executor and clock from fakes.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fakes import FakeClock, FakeExecutor

from rlmake.errors import BuildFailed, Interrupted
from rlmake.model import BuildOptions, Decision, Job, Outcome, Status
from rlmake.project import Project


class Recording:
    """A reporter that keeps every event."""

    wants_every_job = False

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[Outcome] = []
        self.warnings: list[str] = []
        self.outcomes: list[Outcome] = []

    def phase_started(self, phase) -> None:
        pass

    def build_started(self, total: int) -> None:
        pass

    def job_started(self, job: Job, decision: Decision) -> None:
        self.started.append(job.target)

    def job_finished(self, outcome: Outcome) -> None:
        self.finished.append(outcome)

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None:
        self.outcomes = outcomes


@dataclass
class Built:
    ran: list[str]                          # targets whose commands ran, in order
    status: str                             # "ok", "failed" or "interrupted"
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def of(self, status: Status) -> set[str]:
        return {t for t, o in self.outcomes.items() if o.status is status}


class Engine:
    """One project directory, built again and again in-process."""

    def __init__(self, root: Path, clock: FakeClock | None = None):
        self.root = Path(root)
        self.clock = clock or FakeClock()

    def write(self, path: str, text: str) -> None:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)

    def read(self, path: str) -> str:
        return (self.root / path).read_text()

    def build(self, *targets: str, local_cache: bool = False, executor: FakeExecutor | None = None,
              overrides: dict | None = None, **options) -> Built:
        executor = executor or FakeExecutor(self.clock)
        project = Project(str(self.root), overrides=overrides)
        config = project.build_config(BuildOptions(jobs=options.pop("jobs", 2), **options),
                                      local_cache=local_cache, cache_url=None)
        reporter = Recording()
        status = "ok"
        try:
            project.build(targets, config, reporter, executor=executor, clock=self.clock)
        except BuildFailed:
            status = "failed"
        except Interrupted:
            status = "interrupted"
        self.clock.advance(1)
        return Built(list(executor.ran), status,
                     {o.job.target: o for o in reporter.outcomes}, reporter.warnings)
