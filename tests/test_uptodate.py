"""The up-to-date snapshot (uptodate.py) may make a build a no-op only when a full
decision would: these are the ways it could be fooled, each checked against a real build."""

from __future__ import annotations

import os
import time

from conftest import run_subprocess, write_project

COPY = """
    rules:
      out.txt: {deps: [in.txt], command: "cp in.txt out.txt && echo ran >> log.txt"}
    """


def runs(project) -> int:
    log = project / "log.txt"
    return len(log.read_text().splitlines()) if log.exists() else 0


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
    time.sleep(1.1)                                 # past the racy window
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
