"""`rlmake clean` removes every output rlmake recorded writing that a rule still makes
(templated outputs of pattern rules too) and the temporaries a killed restore left; it reads
the records only once it holds the lock. `rlmake cache gc` removes the temporaries a killed
write left in the store and refuses sizes that are not finite and at least zero.

Only names that are exactly rlmake's own temporaries are removed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from buildkit import HOLD, Project, build_env, finish, rlmake_exe
from conftest import run_cli, write_project
from rlmake.hashing import digest_file
from rlmake.model import ExecutionStatus, JobInputs, RunRecord, Status
from rlmake.state import StateDB

RULES = """
rules:
  top.txt:
    command: echo top > top.txt
  out/x.txt:
    command: echo x > out/x.txt
"""

OURS = [".rlmake-restore-0123456789abcdef", "out/.rlmake-restore-fedcba9876543210"]
NOT_OURS = [".rlmake-restore-0123456789ABCDEF", "out/.rlmake-restore-0123",
            "out/.rlmake-restore-0123456789abcdef0", "out/.rlmake-restore-0123456789abcdeg",
            "out/rlmake-restore-0123456789abcdef", "out/.rlmake-restore-0123456789abcdef.txt"]


def _recorded(root: Path, outputs: dict[str, str]) -> Path:
    """A project whose records say a build wrote `outputs` (path -> content), as written."""
    write_project(root, RULES, outputs)
    state = StateDB(str(root / ".rlmake"))
    state.start_execution("e1", 1.0, ["rlmake", "build"])
    for path in outputs:
        inputs = JobInputs((), {}, (path,), (), {}, {})
        state.record_run(RunRecord("e1", path, path, "k", Status.DONE, (), 1.0, 2.0, 0, inputs,
                                   writes=((path, digest_file(str(root / path))),)))
    state.finish_execution("e1", 2.0, ExecutionStatus.SUCCEEDED, len(outputs), 0, 0)
    state.close()
    return root


def _leftovers(root: Path) -> None:
    for name in [*OURS, *NOT_OURS]:
        (root / name).write_text("partial blob\n")
    (root / "out" / ".rlmake-restore-aaaaaaaaaaaaaaaa").mkdir()     # ours by name, not a file


def test_clean_removes_the_temporaries_of_an_interrupted_restore(tmp_path):
    root = _recorded(tmp_path / "proj", {"top.txt": "top\n", "out/x.txt": "x\n"})
    _leftovers(root)
    dry = run_cli(["clean", "-n"], cwd=root)
    assert dry.exit_code == 0, dry.describe()
    for name in OURS:
        assert f"{name}: would remove (left by an interrupted restore)" in dry.lines
        assert (root / name).exists()
    result = run_cli(["clean"], cwd=root)
    assert result.exit_code == 0, result.describe()
    assert sorted(result.lines) == sorted([
        "top.txt: removed", "out/x.txt: removed",
        *(f"{name}: removed (left by an interrupted restore)" for name in OURS)])
    for name in OURS:
        assert not (root / name).exists()
    for name in NOT_OURS:
        assert (root / name).read_text() == "partial blob\n"
    assert (root / "out" / ".rlmake-restore-aaaaaaaaaaaaaaaa").is_dir()


def test_clean_of_a_target_removes_the_temporaries_beside_its_outputs(tmp_path):
    root = _recorded(tmp_path / "proj", {"out/x.txt": "x\n"})
    _leftovers(root)
    result = run_cli(["clean", "out/x.txt"], cwd=root)
    assert result.exit_code == 0, result.describe()
    assert not (root / OURS[1]).exists()
    assert (root / OURS[0]).exists()            # beside no output of out/x.txt


def test_gc_removes_the_temporaries_of_interrupted_writes_only(tmp_path):
    root = write_project(tmp_path / "proj", RULES)
    shard = root / ".rlmake" / "cache" / "cas" / "ab"
    shard.mkdir(parents=True)
    entry = shard / ("ab" + "0" * 62)
    entry.write_bytes(b"a stored blob")
    (shard / ".tmp-0123456789abcdef").write_bytes(b"half a blob")
    (root / ".rlmake" / "cache" / "ac").mkdir()
    (root / ".rlmake" / "cache" / "ac" / ".tmp-fedcba9876543210").write_bytes(b"half")
    for name in (".tmp-mine", ".tmp-0123456789ABCDEF", ".tmp-0123456789abcdef.keep"):
        (shard / name).write_bytes(b"not rlmake's")
    result = run_cli(["cache", "gc", "--max-size", "1G"], cwd=root)
    assert result.exit_code == 0, result.describe()
    assert f"local store {root / '.rlmake' / 'cache'}: removed 2 temporary files left by " \
           "interrupted writes" in result.lines
    assert sorted(p.name for p in shard.iterdir()) == sorted(
        [entry.name, ".tmp-mine", ".tmp-0123456789ABCDEF", ".tmp-0123456789abcdef.keep"])
    assert list((root / ".rlmake" / "cache" / "ac").iterdir()) == []


@pytest.mark.parametrize("size", ["inf", "nan", "-1G", "1X", "", "1e400", "9" * 400, "G"])
def test_gc_refuses_a_size_that_is_not_finite_and_at_least_zero(tmp_path, size):
    root = write_project(tmp_path / "proj", RULES)
    shard = root / ".rlmake" / "cache" / "cas" / "ab"
    shard.mkdir(parents=True)
    (shard / ("ab" + "0" * 62)).write_bytes(b"a stored blob")
    result = run_cli(["cache", "gc", "--max-size", size], cwd=root)
    assert result.exit_code == 2, result.describe()
    assert f"bad size '{size}'" in result.stderr, result.describe()
    assert (shard / ("ab" + "0" * 62)).exists()


@pytest.mark.parametrize("size, kept", [("0", False), ("1K", True), ("1.5KiB", True)])
def test_gc_still_takes_the_sizes_it_documents(tmp_path, size, kept):
    root = write_project(tmp_path / "proj", RULES)
    shard = root / ".rlmake" / "cache" / "cas" / "ab"
    shard.mkdir(parents=True)
    (shard / ("ab" + "0" * 62)).write_bytes(b"a stored blob")
    result = run_cli(["cache", "gc", "--max-size", size], cwd=root)
    assert result.exit_code == 0, result.describe()
    assert (shard / ("ab" + "0" * 62)).exists() == kept


@pytest.mark.integration
def test_clean_removes_the_templated_outputs_of_a_pattern_rule(tmp_path):
    project = Project(tmp_path / "proj")
    project.rules("""
        rules:
          all:
            deps: [a.o, x.out]
          "%.o":
            deps: ["%.c"]
            outputs: ["{{ target }}.d", "{{ stem }}.map", "%.lst"]
            command: >-
              cp {{ deps[0] }} {{ target }} && echo d > {{ target }}.d && echo m > {{ stem }}.map
              && echo l > {{ stem }}.lst
          x.out:
            outputs: ["{{ target }}.log"]
            command: echo x > x.out && echo log > x.out.log
        """)
    project.write("a.c", "int a;\n")
    project.build()
    made = ["a.o", "a.o.d", "a.map", "a.lst", "x.out", "x.out.log"]
    assert all(project.exists(path) for path in made)
    project.write("a.map", "edited by hand\n")
    result = subprocess.run([*rlmake_exe(), "clean"], cwd=project.root, capture_output=True,
                            text=True, env=build_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(
        ["a.o: removed", "a.o.d: removed", "a.map: kept (changed since rlmake wrote it)",
         "a.lst: removed", "x.out: removed", "x.out.log: removed"])
    assert [path for path in made if project.exists(path)] == ["a.map"]
    assert project.read("a.c") == "int a;\n"


def _blocked_on_lock(lock_path: Path) -> bool:
    """Whether some process waits for the flock on `lock_path` (a '->' line in /proc/locks)."""
    inode = os.stat(lock_path).st_ino
    with open("/proc/locks") as stream:
        return any("->" in line and f":{inode} " in line for line in stream)


@pytest.mark.integration
def test_clean_reads_the_records_after_it_has_the_lock(tmp_path):
    """A clean started during a build waits for it, then removes what that build wrote."""
    if not os.path.exists("/proc/locks"):
        pytest.skip("needs /proc/locks to see that clean is waiting")
    project = Project(tmp_path / "proj")
    project.rules(f"""
        rules:
          out.txt:
            command: "{HOLD}; echo built > out.txt"
        """)
    build = project.start("out.txt")
    project.wait_for("started")
    clean = subprocess.Popen([*rlmake_exe(), "clean"], cwd=project.root, env=build_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not _blocked_on_lock(project.root / ".rlmake" / "lock"):
            assert clean.poll() is None, clean.communicate()
            assert time.monotonic() < deadline, "clean never waited for the build's lock"
            time.sleep(0.02)
        project.write("release", "")
        assert finish(build).returncode == 0
        cleaned = finish(clean)
    finally:
        for process in (build, clean):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert cleaned.returncode == 0, cleaned.describe()
    assert "out.txt: removed" in cleaned.lines, cleaned.describe()
    assert not project.exists("out.txt")
