"""A no-op build stats each source once: the stored plan's check (plancache.py) hands
the stats it took to the up-to-date snapshot (uptodate.py), which compares them in
place of its own. Those stats are older than the snapshot's check, so they must
never let a file edited since they were taken pass for up to date.

In-process: builds with the fake executor and clock (tests/engine.py), and the
snapshot check on its own, on real files in a temporary directory."""

from __future__ import annotations

import os
import time

import pytest
from engine import Engine, Recording
from fakes import FakeExecutor

from rlmake import plancache, project as project_module
from rlmake.hashing import FileHasher, RACY_WINDOW_NS
from rlmake.project import Project
from rlmake.uptodate import Seen, capture, changed_files, seen_stat

RULES = """\
default: [prog]
rules:
  a.o: {deps: [a.c], command: cat a.c > a.o}
  b.o: {deps: [b.c], command: cat b.c > b.o}
  prog: {deps: [a.o, b.o], command: cat a.o b.o > prog}
"""
LATER_NS = 10 * RACY_WINDOW_NS


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", RULES)
    engine.write("a.c", "a1\n")
    engine.write("b.c", "b1\n")
    assert engine.build().ran == ["a.o", "b.o", "prog"]
    assert engine.build().ran == []             # up to date: the snapshot is stored
    return engine


def age(root) -> None:
    """Every project file last changed ten seconds ago, as waiting would leave it:
    the snapshot then trusts their stat without reading them (not .rlmake/)."""
    past = time.time_ns() - LATER_NS
    for path in root.rglob("*"):
        if path.is_file() and ".rlmake" not in path.relative_to(root).parts:
            os.utime(path, ns=(past, past))


def stats_of(monkeypatch, names: set[str]) -> list[str]:
    """Every later os.stat of a path ending in one of `names`, by that name."""
    seen: list[str] = []
    real = os.stat

    def counting(path, *args, **kwargs):
        name = os.path.basename(os.fsdecode(path)) if isinstance(path, (str, bytes)) else ""
        if name in names:
            seen.append(name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    return seen


def edit_before_the_snapshot_check(monkeypatch, edit) -> None:
    """Run `edit` after the stored plan's check stat'ed the sources and before the
    snapshot's check compares them: the moment the shared stats are out of date."""
    real = project_module.freshness

    def late(plan, stored, project_dir, seen=None):
        edit()
        return real(plan, stored, project_dir, seen)

    monkeypatch.setattr(project_module, "freshness", late)


# --- one stat per source -----------------------------------------------------------

def test_a_no_op_stats_each_source_once(engine, monkeypatch):
    age(engine.root)
    assert engine.build().ran == []             # the snapshot trusts the aged stats
    stats = stats_of(monkeypatch, {"a.c", "b.c"})
    assert engine.build().ran == []
    assert sorted(stats) == ["a.c", "b.c"]


def test_a_plan_expanded_anew_has_no_shared_stats_and_still_sees_edits(engine):
    engine.write("Rulesfile.yaml", RULES + "  extra: {command: 'true'}\n")
    engine.write("a.c", "a2\n")
    assert engine.build().ran == ["a.o", "prog"]
    assert engine.read("prog") == "a2\nb1\n"


# --- never an edit missed ----------------------------------------------------------

@pytest.mark.parametrize("aged", [False, True], ids=["racy", "aged"])
def test_an_edit_after_the_shared_stat_is_built_by_the_next_build(engine, monkeypatch, aged):
    # racy: the snapshot's entries are too fresh to trust by stat and are read again;
    # aged: they are trusted by the stat the stored plan's check took, before the edit.
    if aged:
        age(engine.root)
        assert engine.build().ran == []
    edit_before_the_snapshot_check(monkeypatch, lambda: engine.write("b.c", "b2\n"))
    engine.build()                              # built as the files were, or are
    monkeypatch.undo()
    built = engine.build()
    assert engine.read("prog") == "a1\nb2\n", built.ran
    assert engine.build().ran == []


def test_an_edit_during_an_edit_build_is_built_by_the_next_build(engine):
    age(engine.root)
    assert engine.build().ran == []
    engine.write("a.c", "a2\n")
    # b.c changes while a.o's command runs: after both stats of it were taken
    during = {"a.o": lambda task: engine.write("b.c", "b2\n")}
    engine.build(executor=FakeExecutor(engine.clock, during=during))
    assert engine.read("a.o") == "a2\n"
    engine.build()
    assert engine.read("prog") == "a2\nb2\n"
    assert engine.build().ran == []


def test_shared_stats_serve_one_check_of_one_plan(engine):
    age(engine.root)
    name = plancache.entry_name(str(engine.root / "Rulesfile.yaml"), [], {})
    plan = plancache.load(str(engine.root / ".rlmake"), name, str(engine.root))
    assert plan is not None
    seen = plan.take_seen()
    assert seen is not None and set(seen.stats) == {"a.c", "b.c"}
    assert plan.take_seen() is None             # a second check looks at the files again


def test_one_project_built_twice_looks_at_the_files_each_time(engine):
    """A Project object reused (as a long-lived caller may) must not carry the stats
    of one build into the next."""
    age(engine.root)
    project = Project(str(engine.root))
    config = project.build_config(local_cache=False, cache_url=None)
    executor = FakeExecutor(engine.clock)
    project.build([], config, Recording(), executor=executor, clock=engine.clock)
    assert executor.ran == []
    engine.write("a.c", "a2\n")
    project.build([], config, Recording(), executor=executor, clock=engine.clock)
    assert executor.ran == ["a.o", "prog"]


# --- the snapshot's check on stats taken before it ----------------------------------

def racy_snapshot(root, name: str):
    """A snapshot of `name`, taken right after it was written: too fresh to trust by stat."""
    hasher = FileHasher(str(root), {})
    assert hasher.digest(name) is not None
    snapshot, _ = capture([name], hasher.updated, hasher.memo.get, None, set(), {},
                          time.time_ns())
    return snapshot


def seen_now(root, name: str) -> Seen:
    looked_ns = time.time_ns()
    packed = seen_stat(os.stat(root / name))
    assert packed is not None
    return Seen(looked_ns, {name: packed})


def test_a_piece_verified_on_earlier_stats_is_retimed_no_later_than_they_were_taken(tmp_path):
    (tmp_path / "in.txt").write_text("aaaa")
    snapshot = racy_snapshot(tmp_path, "in.txt")
    seen = seen_now(tmp_path, "in.txt")
    deadline = time.monotonic() + 5             # the check comes strictly later
    while time.time_ns() <= seen.looked_ns:
        assert time.monotonic() < deadline
    changed, verified = changed_files(snapshot, str(tmp_path), seen)
    assert changed == set() and list(verified) == [0]
    # Trusting the stat from the moment of the check would vouch for a time at which
    # nobody looked at the file.
    assert verified[0] <= seen.looked_ns


def test_a_too_fresh_entry_is_read_again_even_when_its_stat_was_shared(tmp_path):
    # As a rewrite within one timestamp tick leaves it: the stat the stored plan's check
    # saw is the snapshot's, the content is not.
    (tmp_path / "in.txt").write_text("aaaa")
    snapshot = racy_snapshot(tmp_path, "in.txt")
    seen = seen_now(tmp_path, "in.txt")
    (tmp_path / "in.txt").write_text("bbbb")
    assert changed_files(snapshot, str(tmp_path), seen) == ({"in.txt"}, {})


def test_the_shared_stat_is_the_one_compared(tmp_path):
    (tmp_path / "in.txt").write_text("aaaa")
    (tmp_path / "other.txt").write_text("aaaa")
    hasher = FileHasher(str(tmp_path), {})
    hasher.digest("in.txt")
    hashed_later = {path: entry._replace(hashed_ns=entry.hashed_ns + LATER_NS)
                    for path, entry in hasher.updated.items()}
    snapshot, _ = capture(["in.txt"], hashed_later, hasher.memo.get, None, set(), {},
                          time.time_ns() + LATER_NS)       # trusted by stat alone
    assert changed_files(snapshot, str(tmp_path)) == (set(), {})
    elsewhere = seen_stat(os.stat(tmp_path / "other.txt"))
    assert elsewhere is not None
    assert changed_files(snapshot, str(tmp_path), Seen(time.time_ns(), {"in.txt": elsewhere})
                         ) == ({"in.txt"}, {})
