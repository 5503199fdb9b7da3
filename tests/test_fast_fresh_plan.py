"""A fresh `build -n` of a large project, made faster without changing its answer.

Each shortcut is held to the slower way it replaces: a path that `_is_normal` passes is
what `normalise` gives; a pattern's pre-split candidates find the stem the old match
found; the index made in one pass is the index made the old way; a dry run with no
state makes no plan key, and takes the sources that expansion just found, instead of
looking at them again; the cycle collector is off while a plan is expanded and surveyed,
and on again after.
"""

from __future__ import annotations

import gc
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build_n, run_cli, write_project
from test_fresh_dry_run import RULES, SOURCES  # the same two-object project
from rlmake import hashing, plancache
from rlmake.model import Job, Location, PlanIndex
from rlmake.paths import normalise
from rlmake.rules import expand
from rlmake.rules.expand import Expander

SETTINGS = settings(max_examples=400, deadline=None, database=None)

# Paths made of the characters that matter to normalising
paths = st.text(alphabet="a./", max_size=10) | st.text(alphabet="ab./", min_size=1, max_size=10)


@SETTINGS
@given(path=paths)
def test_a_path_taken_as_normal_is_what_normalise_gives(path):
    if expand._is_normal(path):
        assert normalise(path, "/project") == path


@SETTINGS
@given(path=paths | st.just("/project/a/../b"))
def test_the_expanders_norm_is_normalise(path):
    expander = Expander.__new__(Expander)           # only what _norm needs
    expander._normalised, expander.project_dir = {}, "/project"
    assert expander._norm(path) == normalise(path, "/project")


def old_match(pattern: str, path: str) -> str | None:
    """The match as expand.py made it before candidates were split once per pattern."""
    prefix, _, suffix = pattern.partition("%")
    if len(path) > len(prefix) + len(suffix) and path.startswith(prefix) \
            and path.endswith(suffix):
        return path[len(prefix):len(path) - len(suffix)]
    return None


@SETTINGS
@given(patterns=st.lists(st.text(alphabet="ab%./", max_size=6).map(lambda p: p.replace(
    "%", "", p.count("%") - 1) if p.count("%") > 1 else p + ("%" if "%" not in p else "")),
    min_size=1, max_size=3), path=st.text(alphabet="ab./", max_size=8))
def test_the_stem_is_the_one_the_old_match_found(patterns, path):
    candidates = tuple(expand._split_pattern(pattern) for pattern in patterns)
    old = next((stem for pattern in patterns
                if (stem := old_match(pattern, path)) is not None), None)
    assert expand._stem(candidates, path) == old


def old_index(jobs: list[Job]) -> PlanIndex:
    """PlanIndex.of as it was written before it was made faster."""
    readers: dict[str, list[int]] = {}
    waiters: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        for path in (*job.deps, *job.outputs):
            readers.setdefault(path, []).append(i)
        for path in job.order_only:
            waiters.setdefault(path, []).append(i)
    dependents = []
    for job in jobs:
        made = (job.target, *job.outputs)
        found = {reader for path in made for reader in readers.get(path, ())}
        found.update(waiter for path in made for waiter in waiters.get(path, ()))
        dependents.append(tuple(sorted(i for i in found if jobs[i].target != job.target)))
    return PlanIndex({path: tuple(found) for path, found in readers.items()},
                     tuple(dependents), tuple(i for i, job in enumerate(jobs) if job.always),
                     tuple(path for job in jobs for path in job.outputs))


NAMES = [f"p{n}" for n in range(8)]


@st.composite
def job_lists(draw) -> list[Job]:
    """Jobs with distinct targets (as in any plan) and deps, outputs and order-only deps
    among a few names, repeats allowed."""
    targets = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    names = st.lists(st.sampled_from(NAMES), max_size=4).map(tuple)
    jobs = []
    for target in targets:
        writes = draw(st.booleans())
        more = draw(names)
        jobs.append(Job(target, "r", Location("Rulesfile.yaml", 1),
                        (target, *more) if writes else (), draw(names),
                        ("c",) if writes else (), always=draw(st.booleans()),
                        order_only=draw(names)))
    return jobs


@SETTINGS
@given(jobs=job_lists())
def test_the_index_is_the_one_the_old_way_made(jobs):
    assert PlanIndex.of(jobs) == old_index(jobs)


COMMANDS = ["cat obj/a.o obj/b.o > lib.a", "cp src/a.c obj/a.o", "cp src/b.c obj/b.o"]


def test_a_dry_run_with_no_state_makes_no_plan_key(tmp_path, monkeypatch):
    """The key finds a stored snapshot; with no state database there is none to find."""
    project = write_project(tmp_path, RULES, SOURCES)

    def refuse(plan):
        raise AssertionError("a dry run with no state computed the plan's key")

    monkeypatch.setattr(plancache, "identify", refuse)
    assert sorted(build_n(project)) == COMMANDS
    assert not (project / ".rlmake").exists()


def test_a_dry_run_with_state_still_uses_its_snapshot(tmp_path, monkeypatch):
    """Once a build stored state, the key is made, and the up-to-date snapshot found."""
    project = write_project(tmp_path, RULES, SOURCES)
    assert run_cli(["build"], project).exit_code == 0
    identified = []
    real = plancache.identify
    monkeypatch.setattr(plancache, "identify", lambda plan: identified.append(1) or real(plan))
    monkeypatch.setattr(plancache, "load", lambda *args: None)     # plan anew, as a dry run
    result = run_cli(["build", "-n"], project)
    assert result.exit_code == 0 and result.stdout == "", result.describe()
    assert identified == [1]


def test_a_dry_run_does_not_look_again_at_sources_expansion_found(tmp_path, monkeypatch):
    project = write_project(tmp_path, RULES, SOURCES)
    looked_at = []
    real = hashing.FileHasher.exists
    monkeypatch.setattr(hashing.FileHasher, "exists",
                        lambda hasher, path: looked_at.append(path) or real(hasher, path))
    assert sorted(build_n(project)) == COMMANDS
    assert looked_at == []


def test_only_a_dry_run_takes_expansions_word(tmp_path, monkeypatch):
    """A build reads its sources anyway; a dry run of a stored plan has no expansion."""
    from rlmake.scan import DependencyScan

    project = write_project(tmp_path, RULES, SOURCES)
    given = []
    real = DependencyScan.__init__

    def recording(self, *args, **kwargs):
        real(self, *args, **kwargs)
        given.append((self.dry_run, set(self.seen_files)))

    monkeypatch.setattr(DependencyScan, "__init__", recording)
    assert sorted(build_n(project)) == COMMANDS
    assert run_cli(["build"], project).exit_code == 0
    (project / "src/a.c").write_text("a2\n")
    assert build_n(project) == ["cp src/a.c obj/a.o", "cat obj/a.o obj/b.o > lib.a"]
    assert given == [(True, {"src/a.c", "src/b.c"}), (False, set()), (True, set())]


def test_a_fifo_found_by_expansion_is_still_refused(tmp_path):
    """Expansion's probe says 'file' of a FIFO; only regular files are taken as seen."""
    project = write_project(tmp_path, """
        rules:
          out: {deps: [pipe], command: "cat pipe > out"}
    """)
    os.mkfifo(project / "pipe")
    result = run_cli(["build", "-n"], project)
    assert "cannot read 'pipe': not a regular file" in result.stderr, result.describe()


def test_the_collector_is_off_while_planning_and_surveying_and_on_after(tmp_path, monkeypatch):
    project = write_project(tmp_path, RULES, SOURCES)
    seen = []
    real_plan = Expander.plan
    monkeypatch.setattr(Expander, "plan",
                        lambda self, requested: seen.append(("plan", gc.isenabled()))
                        or real_plan(self, requested))
    from rlmake.scan import DependencyScan
    real_decide = DependencyScan.decide
    monkeypatch.setattr(DependencyScan, "decide",
                        lambda self, job: seen.append(("decide", gc.isenabled()))
                        or real_decide(self, job))
    assert gc.isenabled()
    assert sorted(build_n(project)) == COMMANDS
    assert gc.isenabled()
    assert ("plan", False) in seen and ("decide", False) in seen
    assert all(enabled is False for _, enabled in seen)


def test_a_collector_the_caller_turned_off_stays_off(tmp_path):
    project = write_project(tmp_path, RULES, SOURCES)
    gc.disable()
    try:
        assert sorted(build_n(project)) == COMMANDS
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_is_made_while_paused_is_still_collected_after():
    """The pause moves what it made to the oldest generation: a full collection still
    finds a reference cycle made meanwhile."""
    import weakref

    from rlmake.project import _collector_paused

    class Node:
        pass

    with _collector_paused():
        node = Node()
        node.self = node
        alive = weakref.ref(node)
        del node
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert alive() is not None
    gc.collect()
    assert alive() is None


def test_objects_the_caller_froze_stay_frozen():
    from rlmake.project import _collector_paused

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with _collector_paused():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


scalars = st.sampled_from(["a.c", "on", "off", "yes", "1", "1.5", "0x1f", "~", "null", "''",
                           "'on'", '"1"', "!!str 2", "!!int '3'", "[x]", "{k: v}", "&a x",
                           "2001-12-14", "src/%.c", "'{{ dep }}'", "-", ".inf", "<<"])


@SETTINGS
@given(items=st.lists(scalars, max_size=5), block=st.booleans())
def test_a_list_of_strings_loads_as_yaml_constructs_it(items, block, tmp_path_factory):
    """The loader's shortcut for a sequence of plain strings gives what constructing
    each item gives: other tags (numbers, booleans, nulls, nested lists) still go to
    the constructor."""
    import yaml

    from rlmake.rules import rulesfile

    if block:
        text = "deps:\n" + "".join(f"  - {item}\n" for item in items) if items else "deps: []\n"
    else:
        text = f"deps: [{', '.join(items)}]\n"
    path = tmp_path_factory.mktemp("yaml") / "Rulesfile.yaml"
    path.write_text(text)
    try:
        expected = yaml.load(text, Loader=yaml.SafeLoader)["deps"]
    except yaml.YAMLError:
        return
    assert rulesfile._read_yaml(str(path), "Rulesfile.yaml")["deps"] == expected


@SETTINGS
@given(patterns=st.lists(st.text(alphabet="ab%./", max_size=6).filter(
    lambda p: p.count("%") == 1), min_size=1, max_size=3), path=st.text(alphabet="ab./",
                                                                       max_size=8))
def test_a_path_in_no_patterns_suffix_matches_none(patterns, path):
    """_pattern_for skips a path that ends in no pattern's suffix: no stem is then lost."""
    candidates = tuple(expand._split_pattern(pattern) for pattern in patterns)
    if not path.endswith(tuple(suffix for _, suffix in candidates)):
        assert expand._stem(candidates, path) is None


class _Stream:
    """A stream buffered until flushed, writing into a log it shares with others: what
    a reader of stdout and stderr merged (`2>&1`) sees, in the order it sees it."""

    def __init__(self, log: list[str], buffered: bool):
        self.log, self.buffered, self.pending, self.flushes = log, buffered, [], 0

    def write(self, text: str) -> int:
        (self.pending if self.buffered else self.log).append(text)
        return len(text)

    def flush(self) -> None:
        self.flushes += 1
        self.log.extend(self.pending)
        self.pending.clear()

    def isatty(self) -> bool:
        return False


def test_a_dry_runs_lines_are_flushed_once_and_before_anything_on_stderr():
    from rlmake.model import Decision, Outcome, Status
    from rlmake.reporters.console import ConsoleReporter

    log: list[str] = []
    out, err = _Stream(log, buffered=True), _Stream(log, buffered=False)
    reporter = ConsoleReporter(out=out, err=err, dry_run=True, status_line=False)
    jobs = [Job(f"t{n}", "r", Location("Rulesfile.yaml", 1), (f"t{n}",), (), (f"cmd {n}",))
            for n in range(11)]
    for job in jobs[:10]:
        reporter.job_finished(Outcome(job, Status.WOULD_RUN, Decision("")))
    reporter.job_finished(Outcome(jobs[10], Status.FAILED, error="dep 'x' does not exist"))
    reporter.warning("careful")
    reporter.build_finished([], 0.0)
    assert "".join(log) == ("".join(f"cmd {n}\n" for n in range(10)) +
                            "FAILED: t10\n  dep 'x' does not exist\n"
                            "rlmake: warning: careful\nrlmake: nothing to do\n")
    assert out.flushes <= 3                  # not one a line


@pytest.mark.integration
def test_a_dry_run_into_a_closed_pipe_ends_quietly(tmp_path):
    """Its lines are written at the end, still inside the command: exit 1, as a build."""
    import subprocess

    from buildkit import build_env, rlmake_exe

    project = write_project(tmp_path, RULES, SOURCES)
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run([*rlmake_exe(), "build", "-n"], cwd=project, stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=build_env())
    finally:
        os.close(writer)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
