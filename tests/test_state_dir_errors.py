"""A `.rlmake` that is a file, a symlink loop or not writable, and a lock file that is a
directory or cannot be made: every command says which path and what to do (exit 2), never
a traceback.

The tests run as root, which ignores permission bits: a read-only `.rlmake` is made
immutable with `chattr +i` where the file system allows it (else the test is skipped), and
the errors a non-root user gets (EACCES, ENAMETOOLONG) are raised in-process by monkeypatch.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from buildkit import build_env, rlmake_exe
from conftest import run_cli, write_project
from rlmake.errors import StateError
from rlmake.lock import ProjectLock

# No command: the in-process tests never start a process.
SOURCES_ONLY = """
rules:
  all:
    deps: [in.txt]
"""

COMMANDS = [["build"], ["clean"], ["why"], ["log"], ["cache", "stats"],
            ["cache", "gc", "--max-size", "1G"]]


def _project(root: Path) -> Path:
    return write_project(root, SOURCES_ONLY, {"in.txt": "in\n"})


def _assert_clear(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.describe()
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.describe()
    for fragment in fragments:
        assert fragment in result.stderr, result.describe()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_state_directory_that_is_a_file(tmp_path, command):
    root = _project(tmp_path / "proj")
    (root / ".rlmake").write_text("not a directory\n")
    result = run_cli([*command, "-C", root], cwd=root)
    _assert_clear(result, f"{root / '.rlmake'}", "not a directory", "move it aside")
    assert (root / ".rlmake").read_text() == "not a directory\n"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_state_directory_that_is_a_symlink_loop(tmp_path, command):
    root = _project(tmp_path / "proj")
    os.symlink(".rlmake", root / ".rlmake")
    result = run_cli([*command, "-C", root], cwd=root)
    _assert_clear(result, f"{root / '.rlmake'}", "symbolic links")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_state_directory_that_is_a_dangling_link(tmp_path, command):
    root = _project(tmp_path / "proj")
    os.symlink(tmp_path / "gone", root / ".rlmake")
    result = run_cli([*command, "-C", root], cwd=root)
    _assert_clear(result, f"{root / '.rlmake'}", "symbolic link to a missing path")
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("command", [["build"], ["log"]], ids=" ".join)
def test_a_state_database_that_is_a_directory(tmp_path, command):
    root = _project(tmp_path / "proj")
    (root / ".rlmake" / "state.db").mkdir(parents=True)
    result = run_cli([*command, "-C", root], cwd=root)
    _assert_clear(result, f"cannot use the state database {root / '.rlmake' / 'state.db'}",
                  "Is a directory", "remove it")


@pytest.mark.parametrize("command", [["build"], ["clean"]], ids=" ".join)
def test_a_lock_file_that_is_a_directory(tmp_path, command):
    root = _project(tmp_path / "proj")
    (root / ".rlmake" / "lock").mkdir(parents=True)
    result = run_cli([*command, "-C", root], cwd=root)
    _assert_clear(result, f"cannot use the lock file {root / '.rlmake' / 'lock'}",
                  "Is a directory", "remove it")


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS])
def test_a_lock_file_that_cannot_be_opened(tmp_path, monkeypatch, code):
    lock = ProjectLock(str(tmp_path / ".rlmake"))
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if path == lock.path:
            raise OSError(code, os.strerror(code), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(StateError) as caught:
        lock.acquire(wait=True, on_wait=print)
    assert f"cannot use the lock file {lock.path}: {os.strerror(code)}" in str(caught.value)


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENAMETOOLONG, errno.EPERM])
def test_a_state_directory_that_cannot_be_made(tmp_path, monkeypatch, code):
    """A read-only project as a non-root user sees it: `.rlmake` cannot be created."""
    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(os, "makedirs", refuse)
    state_dir = str(tmp_path / ".rlmake")
    with pytest.raises(StateError) as caught:
        ProjectLock(state_dir)
    assert f"cannot use the state directory {state_dir}: {os.strerror(code)}" \
        in str(caught.value)


@pytest.fixture
def immutable():
    """Make paths immutable with chattr +i (even root cannot write in them); undone after."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if shutil.which("chattr") is None:
            pytest.skip("chattr is not available")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"this file system cannot make files immutable: {done.stderr.strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.integration
def test_a_read_only_state_directory(tmp_path, immutable):
    root = tmp_path / "proj"
    write_project(root, "rules:\n  out.txt:\n    command: echo hi > out.txt\n")
    (root / ".rlmake").mkdir()
    immutable(root / ".rlmake")
    done = subprocess.run([*rlmake_exe(), "build"], cwd=root, capture_output=True, text=True,
                          env=build_env(), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot use the lock file {root / '.rlmake' / 'lock'}" in done.stderr
    assert "make it writable" in done.stderr
    assert not (root / "out.txt").exists()


@pytest.mark.integration
def test_a_read_only_project(tmp_path, immutable):
    root = tmp_path / "proj"
    write_project(root, "rules:\n  out.txt:\n    command: echo hi > out.txt\n")
    immutable(root)
    done = subprocess.run([*rlmake_exe(), "build"], cwd=root, capture_output=True, text=True,
                          env=build_env(), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot use the state directory {root / '.rlmake'}" in done.stderr
    assert "make it writable" in done.stderr
