"""A file the build must read but cannot (a symlink loop, no permission, a name too long
or not UTF-8) is an error naming the file and the problem, never a traceback: status 2
for a declared source, a failed job for a file that a job's command left behind."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from conftest import run_cli, run_subprocess, write_project
from rlmake.errors import UnreadableFile
from rlmake.hashing import FileHasher

LOOP = "too many levels of symbolic links"
COPY = """
    rules:
      out.txt: {deps: [in.txt], command: "cp in.txt out.txt"}
    """


def build(project, *args):
    result = run_subprocess(["build", "--no-local-cache", *args], cwd=project)
    assert "Traceback" not in result.stderr, result.describe()
    return result


def loop(path) -> None:
    os.symlink(os.path.basename(path), path)        # a link to itself


# --- declared sources: status 2 ----------------------------------------------------------

@pytest.mark.integration
def test_a_symlink_loop_as_a_source_is_a_rulesfile_error(tmp_path):
    write_project(tmp_path, COPY)
    loop(tmp_path / "in.txt")
    result = build(tmp_path)
    assert result.exit_code == 2, result.describe()
    assert f"rlmake: error: Rulesfile.yaml:2: rule 'out.txt': cannot read 'in.txt': {LOOP}" \
        in result.stderr


@pytest.mark.integration
def test_a_source_that_turns_into_a_symlink_loop_under_a_stored_plan(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "x"})
    assert build(tmp_path).exit_code == 0           # the plan is stored
    (tmp_path / "in.txt").unlink()
    loop(tmp_path / "in.txt")
    result = build(tmp_path)
    assert result.exit_code == 2, result.describe()
    assert f"cannot read 'in.txt': {LOOP}" in result.stderr


@pytest.mark.integration
def test_a_source_name_too_long_is_a_rulesfile_error(tmp_path):
    name = "x" * 300
    write_project(tmp_path, f"rules:\n  out.txt: {{deps: [{name}], command: touch out.txt}}\n")
    result = build(tmp_path)
    assert result.exit_code == 2, result.describe()
    assert f"rule 'out.txt': cannot read '{name}': file name too long" in result.stderr


@pytest.mark.integration
def test_a_source_whose_name_is_not_utf8_is_an_error(tmp_path):
    write_project(tmp_path, """
        rules:
          out.txt: {deps: ["{{ glob('data/*') }}"], command: "cat data/* > out.txt"}
        """)
    (tmp_path / "data").mkdir()
    with open(os.path.join(os.fsencode(tmp_path), b"data", b"bad\xff.txt"), "w") as stream:
        stream.write("x")
    result = build(tmp_path)
    assert result.exit_code == 2, result.describe()
    # the loader finds it first, in the glob() that named it
    assert "found 'data/bad\\xff.txt', whose name is not UTF-8" in result.stderr


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_source_is_an_error(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "x"})
    os.chmod(tmp_path / "in.txt", 0)
    result = build(tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "cannot read 'in.txt': permission denied" in result.stderr


def test_a_source_in_a_directory_that_cannot_be_searched(tmp_path, monkeypatch):
    write_project(tmp_path, """
        rules:
          out.txt: {deps: [private/in.txt], command: cp private/in.txt out.txt}
        """, {"private/in.txt": "x"})
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if "private" in os.fsdecode(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", stat)
    result = run_cli(["build", "-n", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "Rulesfile.yaml:2: rule 'out.txt': cannot read 'private/in.txt': permission denied" \
        in result.stderr


# --- what a command left behind: the job fails -------------------------------------------

@pytest.mark.integration
def test_an_output_the_command_made_unreadable_fails_the_job(tmp_path):
    write_project(tmp_path, """
        rules:
          out.txt: {command: "ln -s out.txt out.txt"}
        """)
    result = build(tmp_path)
    assert result.exit_code == 1, result.describe()
    assert "FAILED: out.txt" in result.stderr
    assert f"the command exited 0 but rlmake cannot read its output 'out.txt': {LOOP}" \
        in result.stderr


@pytest.mark.integration
def test_a_depfile_that_lists_an_unreadable_file_fails_the_job(tmp_path):
    write_project(tmp_path, """
        rules:
          out.txt:
            depfile: out.d
            command: "ln -s loop.h loop.h && echo 'out.txt: loop.h' > out.d && touch out.txt"
        """)
    result = build(tmp_path)
    assert result.exit_code == 1, result.describe()
    assert f"its depfile lists 'loop.h', which rlmake cannot read: {LOOP}" in result.stderr


# --- the hasher ------------------------------------------------------------------------

def test_the_hasher_names_the_file_and_the_problem(tmp_path, monkeypatch):
    loop(tmp_path / "loop")
    with pytest.raises(UnreadableFile, match=f"cannot read 'loop': {LOOP}"):
        FileHasher(str(tmp_path), {}).digest("loop")
    with pytest.raises(UnreadableFile, match="its name is not valid UTF-8"):
        FileHasher(str(tmp_path), {}).digest(os.fsdecode(b"bad\xff"))
    (tmp_path / "secret").write_text("x")

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    monkeypatch.setattr("rlmake.hashing.digest_file", refuse)
    with pytest.raises(UnreadableFile, match="cannot read 'secret': permission denied"):
        FileHasher(str(tmp_path), {}).digest("secret")
    assert FileHasher(str(tmp_path), {}).digest("missing") is None


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_a_source_that_is_not_a_regular_file_is_an_error(tmp_path, monkeypatch, kind):
    # Found when hashing, not by expansion's stat: the build stops with status 2.
    write_project(tmp_path, COPY)
    monkeypatch.chdir(tmp_path)                     # a socket's path must be short
    if kind == "fifo":
        os.mkfifo("in.txt")                         # reading it would wait for a writer
    else:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind("in.txt")                 # opening it fails: ENXIO
    result = build(tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "rlmake: error: cannot read 'in.txt': not a regular file (a FIFO, socket or device)" \
        in result.stderr
