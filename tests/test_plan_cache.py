"""The compiled plan in .rlmake/plans/ is reused only while everything expansion read
is unchanged: each input of its key, changed, must rebuild the plan."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import build_n, run_cli, write_project


def planned_dry_run(project: Path, *args: str) -> list[str]:
    """`rlmake graph ARGS`, which stores the plan (a dry run stores nothing), then
    `rlmake build -n ARGS`, which reads it: its lines."""
    result = run_cli(["graph", "-C", str(project), *args], cwd=project)
    assert result.exit_code == 0, result.describe()
    return build_n(project, *args)


def plan_files(project: Path) -> dict[str, int]:
    directory = project / ".rlmake" / "plans"
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} if directory.exists() else {}


def test_unchanged_project_reuses_the_stored_plan(tmp_path):
    write_project(tmp_path, """
        rules:
          out.txt: {deps: [in.txt], command: cp in.txt out.txt}
        """, {"in.txt": "x"})
    assert planned_dry_run(tmp_path) == ["cp in.txt out.txt"]
    stored = plan_files(tmp_path)
    assert len(stored) == 1
    os.utime(tmp_path / "Rulesfile.yaml")           # touched, same bytes
    assert planned_dry_run(tmp_path) == ["cp in.txt out.txt"]
    assert plan_files(tmp_path) == stored           # not written again: it was reused


def test_rulesfile_edit_rebuilds_the_plan(tmp_path):
    write_project(tmp_path, "rules:\n  a: {command: echo one, phony: true}\n")
    assert planned_dry_run(tmp_path) == ["echo one"]
    write_project(tmp_path, "rules:\n  a: {command: echo two, phony: true}\n")
    assert planned_dry_run(tmp_path) == ["echo two"]


def test_include_edit_rebuilds_the_plan(tmp_path):
    write_project(tmp_path, """
        include: [more.yaml]
        rules:
          a: {deps: [b], command: echo a, phony: true}
        """, {"more.yaml": "rules:\n  b: {command: echo b1, phony: true}\n"})
    assert planned_dry_run(tmp_path) == ["echo b1", "echo a"]
    write_project(tmp_path, None, {"more.yaml": "rules:\n  b: {command: echo b2, phony: true}\n"})
    assert planned_dry_run(tmp_path) == ["echo b2", "echo a"]


def test_override_gets_its_own_plan(tmp_path):
    write_project(tmp_path, """
        vars: {msg: hello}
        rules:
          a: {command: "echo {{ msg }}", phony: true}
        """)
    assert planned_dry_run(tmp_path) == ["echo hello"]
    assert planned_dry_run(tmp_path, "msg=bye") == ["echo bye"]
    assert planned_dry_run(tmp_path) == ["echo hello"]
    assert len(plan_files(tmp_path)) == 2


def test_file_added_under_a_glob_rebuilds_the_plan(tmp_path):
    write_project(tmp_path, """
        rules:
          all.txt:
            deps: ["{{ glob('src/*.txt') }}"]
            command: "cat {{ deps | join(' ') }} > all.txt"
        """, {"src/a.txt": "a"})
    assert planned_dry_run(tmp_path) == ["cat src/a.txt > all.txt"]
    (tmp_path / "src" / "b.txt").write_text("b")
    assert planned_dry_run(tmp_path) == ["cat src/a.txt src/b.txt > all.txt"]


def test_new_file_that_makes_an_earlier_pattern_apply_rebuilds_the_plan(tmp_path):
    write_project(tmp_path, """
        rules:
          all: {deps: [x.o], phony: true}
          "%.o": {deps: ["%.s"], command: "as {{ dep }}"}
          "x.%": {deps: ["x.%.cpp"], command: "c++ -c {{ dep }}"}
        """, {"x.o.cpp": ""})
    assert planned_dry_run(tmp_path) == ["c++ -c x.o.cpp"]     # x.s is missing: the second applies
    (tmp_path / "x.s").write_text("")
    assert planned_dry_run(tmp_path) == ["as x.s"]            # now the first listed one does


def test_deleted_source_is_still_a_rulesfile_error(tmp_path):
    write_project(tmp_path, """
        rules:
          out.txt: {deps: [in.txt], command: cp in.txt out.txt}
        """, {"in.txt": "x"})
    assert planned_dry_run(tmp_path) == ["cp in.txt out.txt"]
    (tmp_path / "in.txt").unlink()
    result = run_cli(["build", "-n", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 2
    assert "no rule to make target 'in.txt', needed by 'out.txt'" in result.stderr


def test_corrupt_stored_plan_is_ignored(tmp_path):
    write_project(tmp_path, "rules:\n  a: {command: echo a, phony: true}\n")
    assert planned_dry_run(tmp_path) == ["echo a"]
    for name in plan_files(tmp_path):
        (tmp_path / ".rlmake" / "plans" / name).write_bytes(b"\x00garbage")
    assert planned_dry_run(tmp_path) == ["echo a"]
