""".rlmake/plans keeps the plans of the PLANS_KEPT most recently used command lines: a
plan is as big as the graph, one per set of targets, and without a bound the directory
grew by that much for every target a user ever built by name."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import build_n, run_cli, run_subprocess, write_project

from rlmake.plancache import PLANS_KEPT

TARGETS = [f"t{n}" for n in range(PLANS_KEPT + 3)]
RULES = "rules:\n" + "".join(f"  {t}: {{command: echo {t}, phony: true}}\n" for t in TARGETS)


def plans_dir(project: Path) -> Path:
    return project / ".rlmake" / "plans"


def names(project: Path) -> set[str]:
    return {path.name for path in plans_dir(project).iterdir()}


def store_plan(project: Path, target: str) -> str:
    """`rlmake graph TARGET`, which stores its plan; the name of the file it added."""
    before = names(project) if plans_dir(project).exists() else set()
    result = run_cli(["graph", "-C", str(project), target], cwd=project)
    assert result.exit_code == 0, result.describe()
    added = names(project) - before
    assert len(added) <= 1
    return added.pop() if added else ""


def age_every_plan(project: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in plans_dir(project).iterdir():
        os.utime(path, (then, then))


def make_older(project: Path, seconds: float) -> None:
    """Every file there last used `seconds` earlier than it was."""
    for path in plans_dir(project).iterdir():
        then = path.stat().st_mtime - seconds
        os.utime(path, (then, then))


def test_only_the_most_recent_plans_are_kept(tmp_path):
    write_project(tmp_path, RULES)
    stored = {}
    for target in TARGETS:
        stored[target] = store_plan(tmp_path, target)
        make_older(tmp_path, 10)            # so that each later plan is strictly newer
    assert all(stored.values())
    left = names(tmp_path)
    assert len(left) == PLANS_KEPT
    assert left == {stored[t] for t in TARGETS[-PLANS_KEPT:]}


def test_a_plan_in_use_outlives_newer_ones_not_used_since(tmp_path):
    write_project(tmp_path, RULES)
    first = store_plan(tmp_path, TARGETS[0])
    for target in TARGETS[1:PLANS_KEPT]:
        store_plan(tmp_path, target)
    age_every_plan(tmp_path, 2 * 3600)
    assert build_n(tmp_path, TARGETS[0]) == [f"echo {TARGETS[0]}"]   # uses its plan
    assert (plans_dir(tmp_path) / first).stat().st_mtime > time.time() - 600
    store_plan(tmp_path, TARGETS[PLANS_KEPT])
    assert len(names(tmp_path)) == PLANS_KEPT
    assert first in names(tmp_path)


def test_only_files_rlmake_names_are_removed(tmp_path):
    write_project(tmp_path, RULES)
    store_plan(tmp_path, TARGETS[0])
    directory = plans_dir(tmp_path)
    hexname = "ab" * 20
    mine = {"notes.txt": "kept", "AB" * 20: "kept: not a digest rlmake writes",
            "0" * 41: "kept: too long"}
    for name, text in mine.items():
        (directory / name).write_text(text)
    abandoned = directory / f".{hexname}.123.tmp"
    fresh = directory / f".{hexname}.456.tmp"
    abandoned.write_text("half a plan")
    fresh.write_text("a plan being written")
    age_every_plan(tmp_path, 2 * 3600)
    os.utime(fresh)
    for target in TARGETS[1:]:
        store_plan(tmp_path, target)
    for name, text in mine.items():
        assert (directory / name).read_text() == text
    assert not abandoned.exists()
    assert fresh.exists()
    plans = [name for name in names(tmp_path) if len(name) == 40 and name.islower()]
    assert len(plans) == PLANS_KEPT


def test_a_pruned_plan_is_expanded_again(tmp_path):
    write_project(tmp_path, RULES)
    for target in TARGETS:
        store_plan(tmp_path, target)
        make_older(tmp_path, 10)
    assert build_n(tmp_path, TARGETS[0]) == [f"echo {TARGETS[0]}"]


@pytest.mark.integration
def test_the_real_cli_keeps_no_more_plans_than_that(tmp_path):
    write_project(tmp_path, RULES)
    for target in TARGETS:
        result = run_subprocess(["build", target], cwd=tmp_path)
        assert result.exit_code == 0, result.describe()
        assert f"echo {target}\n{target}\n" in result.stdout     # its command ran
    assert len(names(tmp_path)) == PLANS_KEPT
