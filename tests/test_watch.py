"""`rlmake build --watch` as a user runs it: the real CLI in its own process, real
commands, real edits. Every wait polls for a file or a line, with a deadline."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from buildkit import Project, kill_group, pid_alive, wait_until_dead



# slow.txt waits, while `hold` exists, until the test creates `release`; it records its
# pid first, so the test knows it is running and can check that it was stopped.
RULES = """
default: [out.txt, slow.txt]
rules:
  out.txt:
    deps: [src.txt]
    command: cp src.txt out.txt
  slow.txt:
    deps: [slow.in]
    command: >-
      echo $$ > slow.pid.tmp && mv slow.pid.tmp slow.pid;
      i=0; while [ -e hold ] && [ ! -e release ] && [ $i -lt 600 ];
      do sleep 0.05; i=$((i+1)); done;
      cat slow.in > slow.txt
"""
NEW_RULE = """
  extra.txt:
    deps: [src.txt]
    command: tr a-z A-Z < src.txt > extra.txt
"""
DEADLINE = 20.0


def wait_until(condition, what: str, project: Project, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s; rlmake said:\n"
                                 + project.said("watch"))
        time.sleep(0.02)


def holds(project: Project, path: str, text: str) -> bool:
    try:
        return project.read(path) == text
    except FileNotFoundError:
        return False


def count(project: Project, text: str) -> int:
    return project.said("watch").count(text)


def running_slow_job(project: Project) -> int:
    """Wait for the slow job to start; its pid."""
    project.wait_for("slow.pid", timeout=DEADLINE)
    return int(project.read("slow.pid"))


@pytest.mark.integration
def test_watch_rebuilds_on_change_during_a_build_and_on_a_new_rulesfile(fresh_proj):
    proj = fresh_proj
    proj.rules(RULES)
    proj.write("src.txt", "one\n")
    proj.write("slow.in", "a\n")
    process = proj.start_logged("watch", "--watch")
    try:
        wait_until(lambda: holds(proj, "out.txt", "one\n") and count(proj, "rlmake: watching 4 files;"),
                   "the first build did not finish", proj)

        proj.write("src.txt", "two\n")                  # an edit: one rebuild
        wait_until(lambda: holds(proj, "out.txt", "two\n"), "no rebuild after an edit", proj)
        assert "rlmake: src.txt changed, building" in proj.said("watch")

        proj.write("hold", "")                          # the slow job now waits for `release`
        os.unlink(proj.root / "slow.pid")
        proj.write("slow.in", "b\n")
        running_slow_job(proj)
        proj.write("src.txt", "three\n")                # saved while the build runs
        proj.write("release", "")
        wait_until(lambda: holds(proj, "slow.txt", "b\n"), "the slow build did not end", proj)
        wait_until(lambda: holds(proj, "out.txt", "three\n"),
                   "an edit made during a build did not build again after it", proj)

        proj.write("Rulesfile.yaml", RULES.replace("default: [out.txt, slow.txt]",
                                                   "default: [out.txt, slow.txt, extra.txt]")
                   + NEW_RULE)
        wait_until(lambda: holds(proj, "extra.txt", "THREE\n"), "no re-plan after the "
                   "Rulesfile changed", proj)
        said = proj.said("watch")
        assert "rlmake: Rulesfile.yaml changed, building" in said

        changed = re.findall(r"^rlmake: (.*) changed, building$", said, re.MULTILINE)
        assert set(changed) <= {"src.txt", "slow.in", "Rulesfile.yaml"}, said   # never an output
    finally:
        kill_group(process)
        process.wait()


@pytest.mark.integration
def test_a_failed_build_keeps_watching_and_ctrl_c_stops_the_running_command(fresh_proj):
    proj = fresh_proj
    proj.rules(RULES)
    proj.write("src.txt", "one\n")
    proj.write("slow.in", "a\n")
    proj.write("hold", "")
    proj.write("release", "")
    process = proj.start_logged("watch", "--watch")
    try:
        wait_until(lambda: count(proj, "rlmake: watching 4 files;") == 1, "no first build", proj)

        os.unlink(proj.root / "src.txt")                # out.txt's dep is gone: the build fails
        wait_until(lambda: count(proj, "rlmake: error:") == 1, "the failure was not said", proj)
        wait_until(lambda: count(proj, "rlmake: watching") == 2, "stopped watching", proj)
        assert process.poll() is None

        os.unlink(proj.root / "release")
        os.unlink(proj.root / "slow.pid")
        proj.write("src.txt", "back\n")
        proj.write("slow.in", "c\n")
        pid = running_slow_job(proj)
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=DEADLINE) == 130, proj.said("watch")
        assert wait_until_dead(pid, 5), "the slow command outlived rlmake"
        assert not pid_alive(pid)
    finally:
        kill_group(process)
        process.wait()


@pytest.mark.integration
def test_without_watchfiles_the_error_says_what_to_install(fresh_proj, tmp_path):
    proj = fresh_proj
    proj.rules(RULES)
    blocker = tmp_path / "no-watchfiles"
    blocker.mkdir()
    (blocker / "watchfiles.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = proj.start("--watch", env=env)
    _, stderr = result.communicate(timeout=DEADLINE)
    assert result.returncode == 2, stderr
    assert "pip install 'rlmake[watch]'" in stderr
    assert not proj.exists("out.txt")                   # refused before anything was built


def test_watched_files_are_the_sources_rulesfile_and_config_never_outputs(tmp_path):
    """In-process: what one cycle watches (no command runs)."""
    from rlmake.project import Project as RlmakeProject
    from rlmake.watch import watched_files

    (tmp_path / "Rulesfile.yaml").write_text(RULES)
    for name in ("src.txt", "slow.in", "out.txt"):
        (tmp_path / name).write_text("x\n")
    said: list[str] = []
    watched = watched_files(RlmakeProject(str(tmp_path)), [], said.append)
    assert watched == {str(tmp_path / name) for name in
                       ("Rulesfile.yaml", "rlmake.toml", "src.txt", "slow.in")}, said
    (tmp_path / "Rulesfile.yaml").write_text("rules: [\n")
    assert watched_files(RlmakeProject(str(tmp_path)), [], said.append) is None
    assert said and "Rulesfile.yaml" in said[0]
