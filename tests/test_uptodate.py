"""The up-to-date snapshot (uptodate.py) may make a build a no-op only when a full
decision would: these are the ways it could be fooled, each checked against a real build."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from conftest import run_subprocess, write_project

pytestmark = pytest.mark.integration     # every test here starts real processes

COPY = """
    rules:
      out.txt: {deps: [in.txt], command: "cp in.txt out.txt && echo ran >> log.txt"}
    """


def runs(project) -> int:
    log = project / "log.txt"
    return len(log.read_text().splitlines()) if log.exists() else 0


def age(project) -> None:
    """Move every project file's mtime 10 s into the past, as waiting would (not .rlmake/)."""
    past = time.time_ns() - 10_000_000_000
    for path in project.rglob("*"):
        if path.is_file() and ".rlmake" not in path.relative_to(project).parts:
            os.utime(path, ns=(past, past))


def build(project, *args):
    # Without the local artifact store, a stale job runs its command: what these tests count.
    result = run_subprocess(["build", "--no-local-cache", *args], cwd=project)
    assert result.exit_code in (0, 1), result.describe()
    return result


def test_rewrite_within_the_same_timestamp_tick_is_caught(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "aaaa"})
    build(tmp_path)
    build(tmp_path)                                 # up to date: the snapshot is stored
    before = os.stat(tmp_path / "out.txt")
    (tmp_path / "out.txt").write_text("bbbb")       # same size, and the mtime put back:
    os.utime(tmp_path / "out.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(tmp_path / "out.txt").st_mtime_ns == before.st_mtime_ns
    build(tmp_path)                                 # stat alone cannot tell; content must
    assert (tmp_path / "out.txt").read_text() == "aaaa"
    assert runs(tmp_path) == 2


def test_snapshot_is_refreshed_once_the_files_are_old_enough(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "aaaa"})
    build(tmp_path)
    age(tmp_path)                                   # as if time passed: past the racy window
    assert "nothing to do" in build(tmp_path).stdout
    assert "nothing to do" in build(tmp_path).stdout
    (tmp_path / "in.txt").write_text("cccc")
    build(tmp_path)
    assert (tmp_path / "out.txt").read_text() == "cccc" and runs(tmp_path) == 2


def test_a_failed_run_recorded_by_another_plan_voids_the_snapshot(tmp_path):
    # `flaky` succeeds the first time and fails after that, without touching its output.
    write_project(tmp_path, """
        rules:
          all: {deps: [flaky.txt, out.txt]}
          flaky.txt:
            command: "test ! -e tried && touch tried && echo ok > flaky.txt"
          out.txt: {deps: [in.txt], command: "cp in.txt out.txt"}
        """, {"in.txt": "x"})
    build(tmp_path)
    build(tmp_path)                                 # snapshot of the plan for `all`
    failed = build(tmp_path, "-B", "flaky.txt")     # another plan; its run fails
    assert failed.exit_code == 1
    again = build(tmp_path)                         # must not be a no-op: flaky's last run failed
    assert again.exit_code == 1 and "FAILED: flaky.txt" in again.stderr


def test_command_edit_is_not_hidden_by_the_snapshot(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "aaaa"})
    build(tmp_path)
    build(tmp_path)
    write_project(tmp_path, COPY.replace("cp in.txt out.txt", "cat in.txt > out.txt"))
    build(tmp_path)
    assert runs(tmp_path) == 2


def test_touching_every_file_rebuilds_nothing(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "aaaa"})
    build(tmp_path)
    build(tmp_path)
    for name in ("in.txt", "out.txt", "Rulesfile.yaml"):
        os.utime(tmp_path / name)
    assert "nothing to do" in build(tmp_path).stdout
    assert runs(tmp_path) == 1


MANY = """
    default: all
    rules:
      all:
        deps: ["{{ glob('src/*.txt') | map('replace', 'src/', 'out/', 1) | list }}"]
      "out/%.txt": {deps: ["src/%.txt"], command: "cp {{ dep }} {{ target }}"}
    """


def snapshot_pieces(project) -> dict[int, int]:
    """Piece number -> its row id, which a rewrite (INSERT OR REPLACE) changes."""
    with sqlite3.connect(project / ".rlmake" / "state.db") as db:
        return dict(db.execute("SELECT piece, rowid FROM uptodate_pieces"))


def test_an_edit_rewrites_only_the_pieces_that_hold_what_changed(tmp_path):
    sources = {f"src/f{n:03}.txt": f"source {n}\n" for n in range(600)}
    write_project(tmp_path, MANY, {**sources, "out/.keep": ""})
    build(tmp_path)
    build(tmp_path)                                 # snapshot: 1,200 files, 3 pieces
    before = snapshot_pieces(tmp_path)
    assert len(before) == 3
    (tmp_path / "src/f001.txt").write_text("edited\n")
    build(tmp_path)
    after = snapshot_pieces(tmp_path)
    assert (tmp_path / "out/f001.txt").read_text() == "edited\n"
    assert after.keys() == before.keys()
    # src/f001 sits in piece 0 and out/f001 in piece 1; piece 2 was not touched
    assert after[0] != before[0] and after[1] != before[1] and after[2] == before[2]
    # the stored pieces still make one whole snapshot: a change in any of them is seen
    (tmp_path / "out/f599.txt").write_text("damaged")
    (tmp_path / "src/f001.txt").write_text("edited again\n")
    build(tmp_path)
    assert (tmp_path / "out/f599.txt").read_text() == "source 599\n"
    assert (tmp_path / "out/f001.txt").read_text() == "edited again\n"
    assert "nothing to do" in build(tmp_path).stdout


def test_a_new_plan_leaves_no_void_snapshot_behind(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "aaaa"})
    build(tmp_path)
    build(tmp_path)
    write_project(tmp_path, COPY.replace("cp in.txt out.txt", "cat in.txt > out.txt"))
    build(tmp_path)                                 # a new plan; its run voids the old snapshot
    build(tmp_path)
    with sqlite3.connect(tmp_path / ".rlmake" / "state.db") as db:
        assert db.execute("SELECT count(*) FROM uptodate").fetchone()[0] == 1
        assert db.execute("SELECT count(DISTINCT plan) FROM uptodate_pieces").fetchone()[0] == 1
