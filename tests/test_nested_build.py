"""A command that runs `rlmake build` of its own project would wait for its parent's lock
forever: it is refused at once (exit 2). A build of another project from a command works."""

from __future__ import annotations

import os
import shlex

import pytest

from buildkit import Project, finish, rlmake_exe
from rlmake.lock import BUILDS_ENV, ProjectLock

RLMAKE = " ".join(shlex.quote(part) for part in rlmake_exe())


@pytest.mark.integration
def test_a_command_that_builds_its_own_project_is_refused_at_once(tmp_path):
    project = Project(tmp_path / "proj")
    project.rules(f"""
        rules:
          outer:
            phony: true
            command: {RLMAKE} build inner 2> nested.err
          inner:
            phony: true
            command: touch inner.done
        """)
    result = finish(project.start("outer"), timeout=30)    # before the fix: never finishes
    assert result.returncode == 1, result.describe()        # the outer command failed
    nested = project.read("nested.err")
    assert "rlmake is already building this project (pid " in nested
    assert "a command cannot start a build of the same project" in nested
    assert "Traceback" not in nested
    assert not project.exists("inner.done")


@pytest.mark.integration
def test_a_command_may_build_another_project(tmp_path):
    other = Project(tmp_path / "other")
    other.rules("""
        rules:
          made.txt:
            command: echo made > made.txt
        """)
    project = Project(tmp_path / "proj")
    project.rules(f"""
        rules:
          outer.txt:
            command: {RLMAKE} -C {shlex.quote(str(other.root))} build && cp ../other/made.txt outer.txt
        """)
    result = project.build("outer.txt")
    assert project.read("outer.txt") == "made\n", result.describe()


def test_a_free_lock_is_taken_even_under_an_announced_build(tmp_path, monkeypatch):
    """A process a build left behind (a daemon) may build the project once that build ended."""
    monkeypatch.setenv(BUILDS_ENV, "999999999")
    lock = ProjectLock(str(tmp_path / ".rlmake"))
    lock.acquire(wait=False, on_wait=print)
    assert os.environ[BUILDS_ENV].split() == ["999999999", str(os.getpid())]
    lock.release()
    assert os.environ[BUILDS_ENV] == "999999999"


def test_the_announcement_is_withdrawn_when_the_lock_is_released(tmp_path, monkeypatch):
    monkeypatch.delenv(BUILDS_ENV, raising=False)
    lock = ProjectLock(str(tmp_path / ".rlmake"))
    lock.acquire(wait=False, on_wait=print)
    assert os.environ[BUILDS_ENV] == str(os.getpid())
    lock.release()
    assert BUILDS_ENV not in os.environ
