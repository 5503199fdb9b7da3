"""What an action record from an unsigned store may make rlmake do: restore the job's
declared outputs inside the project, with plain permission bits, and replay its output
with control characters made visible. Nothing it says may make rlmake read outside the
project, block, or hand the terminal escape codes.

Each end-to-end test stores a real record in a directory store (`--cache DIR
--cache-write`), rewrites it as an attacker with write access to the store would, then
builds afresh from the store alone and checks what happened.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from buildkit import Project
from rlmake.cache.artifacts import terminal_safe
from rlmake.hashing import digest_regular_file
from rlmake.paths import is_project_path

RULES = """
    rules:
      out.txt:
        deps: [in.txt]
        depfile: out.txt.d
        command: >-
          cp in.txt out.txt && echo 'out.txt: in.txt' > out.txt.d &&
          echo ran >> ran.log && echo made out.txt
    """
TIMEOUT = 20        # a build that reads /dev/zero or waits on a FIFO never ends: fail instead
REFUSED = "cache entry refused"


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def project(tmp_path, store) -> Project:
    """A project whose one job's record is in `store`, its outputs and state gone again."""
    project = Project(tmp_path / "project")
    project.rules(RULES)
    project.write("in.txt", "hello\n")
    project.build("--cache", store, "--cache-write")
    assert project.take_log() == ["ran"]
    forget_everything(project)
    return project


def forget_everything(project: Project) -> None:
    for name in ("out.txt", "out.txt.d"):
        (project.root / name).unlink(missing_ok=True)
    shutil.rmtree(project.root / ".rlmake")


def tamper(store, change) -> None:
    """Apply `change(record)` to the store's one action record."""
    [path] = [os.path.join(d, f) for d, _, files in os.walk(store / "ac") for f in files]
    with open(path) as stream:
        record = json.load(stream)
    change(record)
    with open(path, "w") as stream:
        json.dump(record, stream)


def build_from(project: Project, store):
    return project.build("--cache", store, timeout=TIMEOUT)


# --- end to end ----------------------------------------------------------------------

@pytest.mark.integration
def test_an_untampered_record_is_restored(project, store):
    result = build_from(project, store)            # the fixture is sound: a plain hit
    assert project.take_log() == [], result.describe()
    assert project.read("out.txt") == "hello\n"
    assert REFUSED not in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/dev/zero", "../outside.txt", ".rlmake/state.db",
                                  "./in.txt", "sub/../in.txt", "/etc/hostname"])
def test_a_depfile_dep_that_is_not_a_project_path_is_refused(project, store, tmp_path, path):
    (tmp_path / "outside.txt").write_text("outside\n")
    tamper(store, lambda record: record["depfile_deps"].update({path: "0" * 40}))
    result = build_from(project, store)
    assert project.take_log() == ["ran"], result.describe()
    warnings = [line for line in result.stderr.splitlines() if REFUSED in line]
    assert len(warnings) == 1, result.describe()
    assert f"names '{path}', which is not a file path in the project" in warnings[0]


@pytest.mark.integration
def test_an_output_path_outside_the_project_is_refused(tmp_path, store):
    project = Project(tmp_path / "project")
    project.rules("""
        rules:
          ../escaped.txt: {command: "echo x > ../escaped.txt && echo ran >> ran.log"}
        """)
    project.build("--cache", store, "--cache-write")
    assert not (store / "ac").exists()             # a record every lookup would refuse
    (tmp_path / "escaped.txt").unlink()
    result = build_from(project, store)
    assert project.take_log() == ["ran", "ran"] and REFUSED not in result.stderr


@pytest.mark.integration
def test_a_fifo_listed_as_a_depfile_dep_is_not_read(project, store):
    os.mkfifo(project.root / "pipe")                # opening it for reading would block
    tamper(store, lambda record: record["depfile_deps"].update({"pipe": "0" * 40}))
    result = build_from(project, store)
    assert project.take_log() == ["ran"], result.describe()
    assert project.read("out.txt") == "hello\n"


@pytest.mark.integration
def test_a_blob_digest_that_is_a_path_is_refused(project, store, tmp_path):
    digest = "../../trap"
    trap = os.path.normpath(os.path.join(store, "cas", digest[:2], digest))
    os.mkfifo(trap)                                 # a store that read it would block

    def point_at_the_trap(record):
        record["outputs"][0]["digest"] = digest
    tamper(store, point_at_the_trap)
    result = build_from(project, store)
    assert project.take_log() == ["ran"], result.describe()
    assert [line for line in result.stderr.splitlines() if REFUSED in line] == [
        f"rlmake: warning: {REFUSED}, running the job instead: the action record for "
        f"{_key(store)[:8]} in {store} is malformed"]


@pytest.mark.integration
def test_a_restored_mode_keeps_only_permission_bits(project, store):
    def setuid(record):
        record["outputs"][0]["mode"] = 0o6777
    tamper(store, setuid)
    result = build_from(project, store)
    assert project.take_log() == [], result.describe()     # restored, not run
    mode = os.stat(project.root / "out.txt").st_mode
    assert stat.S_IMODE(mode) == 0o777, oct(mode)


@pytest.mark.integration
def test_replayed_output_cannot_drive_the_terminal(project, store):
    def escapes(record):
        record["output"] = "made out.txt\x1b]0;owned\x07\x1b[2J\rX\x9b31m\tend\n"
    tamper(store, escapes)
    result = build_from(project, store)
    assert project.take_log() == [], result.describe()
    assert not any(char in result.stdout for char in "\x1b\x07\r\x9b"), repr(result.stdout)
    assert "made out.txt\\x1b]0;owned\\x07\\x1b[2J\\x0dX\\x9b31m\tend" in result.stdout


@pytest.mark.integration
def test_a_commands_own_output_keeps_its_colours(tmp_path):
    # The decision's other half: a real command's output is printed as it is.
    project = Project(tmp_path / "project")
    project.rules(r"""
        rules:
          out.txt:
            command: |
              printf '\033[31mred\033[0m\n' && touch out.txt
        """)
    result = project.build()
    assert "\x1b[31mred\x1b[0m" in result.stdout, repr(result.stdout)


def _key(store) -> str:
    [name] = [f for _, _, files in os.walk(store / "ac") for f in files]
    return name


# --- the checks themselves -----------------------------------------------------------

@pytest.mark.parametrize("path, allowed", [
    ("out.txt", True), ("sub/dir/out.txt", True), (".hidden", True), (".rlmakefile", True),
    ("", False), (".", False), ("..", False), ("../x", False), ("a/../../x", False),
    ("a/../x", False), ("./x", False), ("a//x", False), ("a/", False), ("/etc/passwd", False),
    ("/dev/zero", False), (".rlmake", False), (".rlmake/state.db", False),
    ("nul\0byte", False), ("\ud800", False), (None, False), (3, False),
])
def test_is_project_path(path, allowed):
    assert is_project_path(path) is allowed


@pytest.mark.parametrize("text, shown", [
    ("plain text\n\twith tabs\n", "plain text\n\twith tabs\n"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("title\x1b]0;x\x07", "title\\x1b]0;x\\x07"),
    ("over\rwrite", "over\\x0dwrite"),
    ("c1 \x9b2J del \x7f", "c1 \\x9b2J del \\x7f"),
    ("accents é ü and → arrows", "accents é ü and → arrows"),
])
def test_terminal_safe(text, shown):
    assert terminal_safe(text) == shown


def test_digest_regular_file_does_not_open_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        digest_regular_file(str(tmp_path / "pipe"))
    with pytest.raises(OSError, match="not a regular file"):
        digest_regular_file("/dev/zero")
    (tmp_path / "file").write_text("x")
    assert len(digest_regular_file(str(tmp_path / "file"))) == 40
