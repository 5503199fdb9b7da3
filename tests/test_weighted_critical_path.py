"""The critical path is weighed in seconds: each job by what its last run took.

In-process (tests/engine.py): the fake executor advances the fake clock by a time
chosen per job, so the first build records real-looking durations and the second
build's start order can be checked exactly, with -j1."""

from __future__ import annotations

import pytest
from engine import Engine
from fakes import FakeExecutor

from rlmake.model import Job, JobList, Location, Plan, PlanIndex
from rlmake.readyqueue import UNKNOWN_SECONDS, critical_path_lengths
from rlmake.state import StateDB

QUICK_CHAINS = 6


class TimedExecutor(FakeExecutor):
    """The fake executor, each job taking `seconds[target]` (1 s by default)."""

    def __init__(self, clock, seconds: dict[str, float]):
        super().__init__(clock)
        self.seconds = seconds

    def _run(self, task):
        self.seconds_per_job = self.seconds.get(task.id, 1.0)
        return super()._run(task)


def _rules() -> str:
    """A slow object under a quick link (two jobs), beside many quick chains of three
    jobs: counting jobs puts every quick chain first; counting seconds, the slow one."""
    lines = ["default: [all]", "rules:",
             "  slow.o:", "    deps: [slow.c]", "    command: cat slow.c > slow.o",
             "  tool:", "    deps: [slow.o]", "    command: cat slow.o > tool"]
    for n in range(QUICK_CHAINS):
        for made, dep in [(f"q{n}.o", f"q{n}.c"), (f"q{n}.a", f"q{n}.o"), (f"q{n}.so", f"q{n}.a")]:
            lines += [f"  {made}:", f"    deps: [{dep}]", f"    command: cat {dep} > {made}"]
    finals = ", ".join(["tool", *(f"q{n}.so" for n in range(QUICK_CHAINS))])
    lines += ["  all:", f"    deps: [{finals}]"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", _rules())
    engine.write("slow.c", "slow\n")
    for n in range(QUICK_CHAINS):
        engine.write(f"q{n}.c", f"quick {n}\n")
    return engine


def test_a_slow_job_starts_first_once_its_duration_is_known(engine):
    first = engine.build(jobs=1, executor=TimedExecutor(engine.clock, {"slow.o": 30.0}))
    assert first.status == "ok"
    # no duration known yet: every job weighs the same, the longer chains of jobs go first
    assert first.ran.index("slow.o") == QUICK_CHAINS
    assert first.ran[:QUICK_CHAINS] == [f"q{n}.o" for n in range(QUICK_CHAINS)]

    second = engine.build(jobs=1, force=True,
                          executor=TimedExecutor(engine.clock, {"slow.o": 30.0}))
    assert second.status == "ok"
    assert second.ran[0] == "slow.o"        # 31 s ahead of it beats 3 s
    assert second.ran[1:1 + QUICK_CHAINS] == [f"q{n}.o" for n in range(QUICK_CHAINS)]
    assert sorted(second.ran) == sorted(first.ran)


def test_the_durations_are_read_only_when_a_job_must_run(engine, monkeypatch):
    engine.build(jobs=1)
    asked: list[list[str]] = []
    real = StateDB.last_durations
    monkeypatch.setattr(StateDB, "last_durations",
                        lambda self, targets: asked.append(list(targets)) or real(self, targets))

    assert engine.build(jobs=1).ran == []                 # a no-op build
    (engine.root / "slow.c").write_text("slow\n")         # same bytes, new stat: decided again
    assert engine.build(jobs=1).ran == []
    assert asked == []

    engine.write("slow.c", "slower\n")
    assert engine.build(jobs=1).ran == ["slow.o", "tool"]
    assert len(asked) == 1 and "slow.o" in asked[0]


def _plan(*jobs: tuple[str, tuple[str, ...]]) -> Plan:
    made = [Job(target, target, Location("Rulesfile.yaml"), (target,), deps, (f"make {target}",))
            for target, deps in jobs]
    return Plan(("top",), JobList(made), {job.target: job.target for job in made}, (),
                PlanIndex.of(made))


def test_a_job_never_run_weighs_the_median_of_the_known_ones():
    plan = _plan(("a", ()), ("b", ()), ("c", ()), ("new", ()), ("top", ("a", "b", "c", "new")))
    lengths = critical_path_lengths(plan, range(5), {"a": 10.0, "b": 2.0, "c": 4.0,
                                                     "top": 1.0})
    assert lengths == {"top": 1.0, "a": 11.0, "b": 3.0, "c": 5.0, "new": 4.0}
    # the median of 10, 2, 4 and 1 is 3: the new job weighs 3, and its chain 3 + 1
    # nothing known: every job weighs the default
    assert critical_path_lengths(plan, range(5), {})["a"] == 2 * UNKNOWN_SECONDS
