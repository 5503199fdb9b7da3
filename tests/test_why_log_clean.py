"""`rlmake why`, `rlmake log` and `rlmake clean`, end to end.

Every test runs the installed `rlmake` console script (CI=1) in a copy of
examples/compile (built for real with gcc) or in a small project under tmp_path,
with real files and the real SQLite state, and checks the exact text a user reads:
exec ids against `rlmake log`, digests against BLAKE2b of the files (how rlmake
digests content), times against the files' mtimes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildkit import build_env, run_in_process

pytestmark = pytest.mark.integration     # every test here starts real processes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compile"
SOURCES = ("prog.c", "lib.c", "prog2.c")
OBJECTS = ("prog.o", "lib.o", "prog2.o")
PROGRAMS = ("prog", "prog2")
JOBS = set(OBJECTS) | set(PROGRAMS)

HEX8 = r"[0-9a-f]{8}"
CLOCK = r"\d\d:\d\d:\d\d"
LOG_HEADER = ("EXEC      STARTED                  TOOK    RAN CACHED RESTORED FAILED  STATUS      "
              "COMMAND")
LOG_ROW = re.compile(r"^(?P<id>[0-9a-f]{8})  (?P<started>.{19})  +(?P<took>\S+)  +(?P<ran>\d+) "
                     r"+(?P<cached>\d+) +(?P<restored>\d+) +(?P<failed>\d+)  (?P<status>\S+) "
                     r"+(?P<command>.*)$")

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


# --- running rlmake ---------------------------------------------------------------------

@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def json(self):
        return json.loads(self.stdout)

    def describe(self) -> str:
        return (f"$ rlmake {' '.join(self.args)}\nexit {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def rl(cwd: Path, *args: str, expect: int | None = 0) -> Result:
    """Run `rlmake ARGS` in `cwd` (the CLI in-process, commands as real processes); check
    the exit status unless expect is None."""
    result = Result(args, *run_in_process(list(args), cwd, build_env()))
    if expect is not None:
        assert result.returncode == expect, result.describe()
    return result


def digest(path: Path) -> str:
    """What rlmake calls a file's digest: BLAKE2b-160 of its bytes."""
    return hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()


def short(path: Path) -> str:
    return digest(path)[:8]


def clock(path: Path) -> str:
    """A file's mtime as `why` prints it (`edited HH:MM:SS`)."""
    return time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def answers(lines: list[str]) -> list[list[str]]:
    """`why` output split into answers: each a top-level line with the indented lines under it."""
    groups: list[list[str]] = []
    for line in lines:
        if line.startswith(" ") and groups:
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def answers_for(lines: list[str], target: str) -> list[list[str]]:
    return [group for group in answers(lines) if group[0].startswith(f"{target}: ")]


def executions(project: Path) -> list[dict]:
    """`rlmake log --json`: the recorded builds, newest first."""
    return rl(project, "log", "--json").json()


def ran_at(project: Path, exec_id: str, target: str) -> str:
    """When `target`'s run in execution `exec_id` started, as HH:MM:SS (from `log ID --json`).

    `why` dates a last build by its job's run, which may be a second after the
    execution's own start that the `log` table shows."""
    shown = rl(project, "log", exec_id, "--json").json()
    runs = [run for run in shown["runs"] if run["target"] == target]
    assert len(runs) == 1, runs
    return time.strftime("%H:%M:%S", time.localtime(runs[0]["started"]))


def log_rows(result: Result) -> list[dict]:
    assert result.lines[0] == LOG_HEADER, result.describe()
    rows = []
    for line in result.lines[1:]:
        match = LOG_ROW.match(line)
        assert match, f"not a log row: {line!r}\n{result.describe()}"
        rows.append(match.groupdict())
    return rows


def file_digests(project: Path) -> dict[str, str]:
    """`rlmake log --file --json`: path -> the digest the records hold."""
    return {row["path"]: row["digest"] for row in rl(project, "log", "--files", "--json").json()}


def ran_targets(result: Result) -> set[str]:
    """Targets that `build -v` says ran (Run or Miss lines)."""
    return {m.group(2) for m in map(re.compile(r"^(Run|Miss) +(.+?): ").match, result.lines) if m}


# --- projects ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compile_template(tmp_path_factory) -> Path:
    """examples/compile built once (one execution); tests get copies of it, state included."""
    root = tmp_path_factory.mktemp("template") / "compile"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".rlmake", *JOBS))
    rl(root, "build")
    return root


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A copy of examples/compile that was never built."""
    root = tmp_path / "compile"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".rlmake", *JOBS))
    return root


@pytest.fixture
def built(tmp_path, compile_template) -> Path:
    """A copy of examples/compile after exactly one build (the first)."""
    root = tmp_path / "compile"
    shutil.copytree(compile_template, root)
    return root


def write_rulesfile(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(text)
    (root / "Rulesfile.yaml").write_text(text[1:] if text.startswith("\n") else text)
    return root


# --- why --------------------------------------------------------------------------------

@needs_gcc
def test_why_after_first_build_names_the_execution_log_lists_first(built):
    why = rl(built, "why", "prog")
    first = executions(built)
    assert len(first) == 1
    exec_id = first[0]["id"]
    assert re.fullmatch(HEX8, exec_id)
    assert why.lines == ["prog: up to date",
                         f"prog: last built in {exec_id} at {ran_at(built, exec_id, 'prog')} "
                         "because it was never built"], why.describe()
    # the plain table lists the same execution first
    assert log_rows(rl(built, "log"))[0]["id"] == exec_id
    assert why.stderr == ""


@needs_gcc
def test_why_traces_an_edited_source_before_and_after_the_build(built):
    lib_c, lib_o = built / "lib.c", built / "lib.o"
    recorded = file_digests(built)
    old_c, old_o = digest(lib_c), digest(lib_o)
    assert (recorded["lib.c"], recorded["lib.o"]) == (old_c, old_o)
    first_exec = executions(built)[0]["id"]

    edit(lib_c, "Hello", "Goodbye")
    new_c = digest(lib_c)
    assert new_c != old_c
    why = rl(built, "why", "prog")
    assert why.lines == [
        "prog: may be rebuilt (if lib.o's bytes change)",
        f"  lib.o: will be rebuilt because lib.c changed ({old_c[:8]} -> {new_c[:8]}, "
        f"edited {clock(lib_c)})",
        f"prog: last built in {first_exec} at {ran_at(built, first_exec, 'prog')} "
        "because it was never built",
    ], why.describe()

    rl(built, "build")
    after = file_digests(built)
    new_o = digest(lib_o)
    assert (after["lib.c"], after["lib.o"]) == (new_c, new_o)
    assert new_o != old_o
    second_exec = executions(built)[0]["id"]
    assert second_exec != first_exec

    why = rl(built, "why", "prog")
    assert why.lines == [
        "prog: up to date",
        f"prog: last built in {second_exec} at {ran_at(built, second_exec, 'prog')} "
        f"because lib.o changed ({old_o[:8]} -> {new_o[:8]})",
        f"  lib.o: rebuilt because lib.c changed ({old_c[:8]} -> {new_c[:8]})",
    ], why.describe()


VARS = """
vars:
  cflags: -O2
rules:
  out.txt:
    deps: [in.txt]
    command: "echo cc {{ cflags }} -c in.txt > out.txt"
"""


def test_why_shows_the_command_diff_and_the_var_set_on_the_command_line(tmp_path):
    root = write_rulesfile(tmp_path / "vars", VARS)
    (root / "in.txt").write_text("x\n")
    rl(root, "build")
    why = rl(root, "why", "out.txt", "cflags=-O3")
    assert why.lines[:7] == [
        "out.txt: will be rebuilt because its command changed",
        "    --- last run",
        "    +++ now",
        "    @@ -1 +1 @@",
        "    -echo cc -O2 -c in.txt > out.txt",
        "    +echo cc -O3 -c in.txt > out.txt",
        "    var 'cflags' changed: '-O2' -> '-O3' (set on the command line)",
    ], why.describe()
    assert re.fullmatch(rf"out\.txt: last built in {HEX8} at {CLOCK} because it was never built",
                        why.lines[7]), why.describe()
    assert len(why.lines) == 8

    # the same change made in the Rulesfile is not "set on the command line"
    edit(root / "Rulesfile.yaml", "cflags: -O2", "cflags: -O3")
    why = rl(root, "why", "out.txt")
    assert why.lines[:7] == [
        "out.txt: will be rebuilt because its command changed",
        "    --- last run",
        "    +++ now",
        "    @@ -1 +1 @@",
        "    -echo cc -O2 -c in.txt > out.txt",
        "    +echo cc -O3 -c in.txt > out.txt",
        "    var 'cflags' changed: '-O2' -> '-O3'",
    ], why.describe()


@needs_gcc
def test_why_missing_output_and_output_edited_by_hand(built):
    (built / "prog").unlink()
    with open(built / "prog2", "ab") as stream:
        stream.write(b"\0patched by hand")
    why = rl(built, "why", "prog", "prog2")
    [prog_next, prog_last] = answers_for(why.lines, "prog")
    [prog2_next, prog2_last] = answers_for(why.lines, "prog2")
    assert prog_next == ["prog: will be rebuilt because output prog is missing"], why.describe()
    assert prog2_next == ["prog2: will be rebuilt because output prog2 was changed since the "
                          "last run wrote it"], why.describe()
    assert re.fullmatch(rf"prog: last built in {HEX8} at {CLOCK} because it was never built",
                        prog_last[0])
    assert prog2_last[0].startswith("prog2: last built in ")


@needs_gcc
def test_why_never_built(fresh):
    why = rl(fresh, "why", "lib.o")
    assert why.lines == ["lib.o: will be rebuilt because it was never built",
                         "lib.o: no build has run it yet"]


REASONS = """
vars:
  greeting: hello
rules:
  all:
    deps: [copy.txt, stamp.txt, env.txt, flaky.txt]
  copy.txt:
    deps: [in.txt]
    command: cp in.txt copy.txt
  stamp.txt:
    always: true
    command: date > stamp.txt
  env.txt:
    env:
      GREETING: "{{ greeting }}"
    command: echo $GREETING > env.txt
  flaky.txt:
    command: test ! -e broken && echo ok > flaky.txt
  extra.txt:
    command: echo extra > extra.txt
"""


def test_why_always_failed_env_and_never_built(tmp_path):
    root = write_rulesfile(tmp_path / "reasons", REASONS)
    (root / "in.txt").write_text("in\n")
    (root / "broken").write_text("")
    build = rl(root, "build", "-k", expect=1)
    assert "FAILED: flaky.txt" in build.stdout + build.stderr, build.describe()
    exec_id = executions(root)[0]["id"]

    why = rl(root, "why", "stamp.txt", "flaky.txt", "env.txt", "extra.txt", "copy.txt",
             "greeting=bye")
    stamp = answers_for(why.lines, "stamp.txt")
    assert [group[0] for group in stamp] == [
        "stamp.txt: will be rebuilt because it has always: true",
        f"stamp.txt: last built in {exec_id} at {ran_at(root, exec_id, 'stamp.txt')} "
        "because it was never built"], why.describe()
    flaky = answers_for(why.lines, "flaky.txt")
    assert [group[0] for group in flaky] == [
        "flaky.txt: will be rebuilt because its last run failed",
        f"flaky.txt: last failed in {exec_id} at {ran_at(root, exec_id, 'flaky.txt')} "
        "because it was never built"], why.describe()
    env = answers_for(why.lines, "env.txt")
    assert env[0] == ["env.txt: will be rebuilt because its env changed",
                      "    --- last run",
                      "    +++ now",
                      "    @@ -1 +1 @@",
                      "    -GREETING=hello",
                      "    +GREETING=bye",
                      "    var 'greeting' changed: 'hello' -> 'bye' (set on the command line)"
                      ], why.describe()
    assert answers_for(why.lines, "extra.txt") == [
        ["extra.txt: will be rebuilt because it was never built"], ["extra.txt: no build has run it yet"]]
    assert answers_for(why.lines, "copy.txt")[0] == ["copy.txt: up to date"]


@needs_gcc
def test_why_without_target_lists_exactly_the_stale_jobs(built):
    assert rl(built, "why").stdout == "everything is up to date\n"
    lib_c = built / "lib.c"
    old = short(lib_c)
    edit(lib_c, "Hello", "Hi")
    why = rl(built, "why")
    assert sorted(why.lines) == sorted([
        f"lib.o: will be rebuilt because lib.c changed ({old} -> {short(lib_c)}, "
        f"edited {clock(lib_c)})",
        "prog: may be rebuilt (if lib.o's bytes change)",
        "prog2: may be rebuilt (if lib.o's bytes change)",
    ]), why.describe()
    rl(built, "build")
    assert rl(built, "why").stdout == "everything is up to date\n"


@needs_gcc
def test_why_without_target_on_a_never_built_project_lists_every_job(fresh):
    why = rl(fresh, "why")
    assert sorted(line.split(":")[0] for line in why.lines) == sorted(JOBS), why.describe()
    for line in why.lines:
        assert re.fullmatch(r"\S+: will be rebuilt because .*it was never built", line), line
    assert "lib.o: will be rebuilt because it was never built" in why.lines


@needs_gcc
def test_why_json(built):
    lib_c = built / "lib.c"
    old = digest(lib_c)
    edit(lib_c, "Hello", "Hey")
    data = rl(built, "why", "--json", "prog").json()
    assert isinstance(data, list) and len(data) == 1
    [answer] = data
    assert answer["target"] == "prog"
    assert answer["next"]["target"] == "prog"
    assert answer["next"]["sentence"] == "may be rebuilt (if lib.o's bytes change)"
    assert answer["next"]["will"] == "maybe"
    assert answer["next"]["reasons"] == [
        {"kind": "DEP_WILL_CHANGE", "path": "lib.o", "old": None, "new": None}]
    [cause] = answer["next"]["causes"]
    assert cause["target"] == "lib.o"
    assert cause["sentence"] == (f"will be rebuilt because lib.c changed ({old[:8]} -> "
                                 f"{digest(lib_c)[:8]}, edited {clock(lib_c)})")
    assert cause["reasons"] == [
        {"kind": "DEP_CHANGED", "path": "lib.c", "old": old, "new": digest(lib_c)}]
    assert cause["causes"] == []
    exec_id = executions(built)[0]["id"]
    assert answer["last"]["target"] == "prog"
    assert answer["last"]["sentence"].startswith(f"last built in {exec_id} at ")
    assert answer["last"]["reasons"] == [
        {"kind": "NEVER_BUILT", "path": None, "old": None, "new": None}]

    # without a target: the stale jobs, with no history
    listed = rl(built, "why", "--json").json()
    assert sorted(entry["target"] for entry in listed) == ["lib.o", "prog", "prog2"]
    assert all(entry["last"] is None for entry in listed)


# --- log --------------------------------------------------------------------------------

@needs_gcc
def test_log_lists_builds_newest_first_with_counts(built):
    rows = log_rows(rl(built, "log"))
    assert len(rows) == 1
    assert (rows[0]["ran"], rows[0]["cached"], rows[0]["failed"], rows[0]["status"],
            rows[0]["command"]) == ("5", "0", "0", "succeeded", "rlmake build")
    assert rl(built, "build").stdout == "rlmake: nothing to do, everything is up to date\n"

    rows = log_rows(rl(built, "log"))
    assert len(rows) == 2
    assert (rows[0]["ran"], rows[0]["cached"], rows[0]["failed"]) == ("0", "5", "0")
    assert (rows[1]["ran"], rows[1]["cached"], rows[1]["failed"]) == ("5", "0", "0")
    data = executions(built)
    assert [row["id"] for row in rows] == [e["id"] for e in data]
    assert data[0]["started"] > data[1]["started"]
    assert [(e["ran"], e["cached"], e["failed"], e["argv"]) for e in data] == [
        (0, 5, 0, ["rlmake", "build"]), (5, 0, 0, ["rlmake", "build"])]
    # -n limits the table
    assert [row["id"] for row in log_rows(rl(built, "log", "--limit", "1"))] == [data[0]["id"]]


@needs_gcc
def test_log_dash_prefix_and_unknown_id(built):
    # a comment no build has seen: prog.o must run, and (same object code) prog is cut off
    prog_c = built / "prog.c"
    old = short(prog_c)
    prog_c.write_text(prog_c.read_text() + f"/* {os.urandom(8).hex()} */\n")
    rl(built, "build")
    newest, first = [e["id"] for e in executions(built)]

    last = rl(built, "log", "-")
    assert last.lines[0] == f"execution {newest}: rlmake build"
    assert re.fullmatch(rf"  started {CLOCK}, took \d+\.\d\ds, succeeded: 1 ran, 4 cached, "
                        r"0 restored, 0 failed", last.lines[1]), last.describe()
    assert len(last.lines) == 4, last.describe()
    assert re.fullmatch(rf"  prog\.o  done +\d+\.\d\ds  "
                        rf"prog\.c changed \({old} -> {short(prog_c)}\); "
                        r"rebuilt to identical bytes", last.lines[2]), last.describe()
    assert last.lines[3] == ("  prog    kept             prog.o was rebuilt to identical bytes; "
                             "prog kept"), last.describe()

    # a unique prefix of the first execution's id
    length = next(n for n in range(3, 9) if first[:n] != newest[:n])
    shown = rl(built, "log", first[:length])
    assert shown.lines[0] == f"execution {first}: rlmake build", shown.describe()
    assert shown.lines[1].endswith("succeeded: 5 ran, 0 cached, 0 restored, 0 failed")
    jobs = {}
    for line in shown.lines[2:]:
        match = re.fullmatch(r"  (\S+) +(\S+) +\d+\.\d\ds  (.*)", line)
        assert match, shown.describe()
        jobs[match.group(1)] = (match.group(2), match.group(3))
    assert jobs == {job: ("done", "never built") for job in JOBS}
    data = rl(built, "log", first[:length], "--json").json()
    assert data["id"] == first and sorted(r["target"] for r in data["runs"]) == sorted(JOBS)

    unknown = next(c * 8 for c in "0123456789abcdef" if c not in (newest[0], first[0]))
    missing = rl(built, "log", unknown, expect=2)
    assert missing.stdout == ""
    assert missing.stderr == f"rlmake: error: no execution or file '{unknown}'\n"


@needs_gcc
def test_log_dash_before_any_build(fresh):
    result = rl(fresh, "log", "-", expect=2)
    assert result.stderr == "rlmake: error: no build has been recorded\n"
    assert rl(fresh, "log").lines == [LOG_HEADER]


def test_log_ambiguous_prefix(tmp_path):
    root = write_rulesfile(tmp_path / "amb", """
        rules:
          out.txt:
            command: echo > out.txt
        """)
    # 17 executions cannot all start with different hex digits
    for _ in range(17):
        rl(root, "build")
        with sqlite3.connect(root / ".rlmake" / "state.db") as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM executions")]
        firsts = [i[0] for i in ids]
        shared = next((c for c in firsts if firsts.count(c) > 1), None)
        if shared:
            break
    count = firsts.count(shared)
    result = rl(root, "log", shared, expect=2)
    assert result.stderr == (f"rlmake: error: '{shared}' matches {count} executions; "
                             "give more of the id\n")


@needs_gcc
def test_log_file_provenance_down_to_the_sources(built):
    exec_id = executions(built)[0]["id"]
    d = {name: short(built / name) for name in ("prog", "prog.o", "lib.o", "prog.c", "lib.c")}
    made = rf"made by rule '(\S+)' in {exec_id} at {CLOCK} \(\d+\.\d\ds\)"
    expected = [
        re.escape(f"prog {d['prog']}"),
        "    " + made.replace(r"(\S+)", "prog"),
        re.escape("    $ gcc -o prog prog.o lib.o"),
        re.escape(f"├── prog.o {d['prog.o']}"),
        re.escape("│   │   ") + made.replace(r"(\S+)", r"prog\.o"),
        re.escape("│   │   $ gcc -c prog.c"),
        re.escape(f"│   └── prog.c {d['prog.c']}  source"),
        re.escape(f"└── lib.o {d['lib.o']}"),
        re.escape("    │   ") + made.replace(r"(\S+)", r"lib\.o"),
        re.escape("    │   $ gcc -c lib.c"),
        re.escape(f"    └── lib.c {d['lib.c']}  source"),
    ]
    result = rl(built, "log", "prog")
    assert len(result.lines) == len(expected), result.describe()
    for pattern, line in zip(expected, result.lines):
        assert re.fullmatch(pattern, line), f"{line!r} !~ {pattern!r}\n{result.describe()}"

    source = rl(built, "log", "lib.c")
    assert source.lines == [f"lib.c {d['lib.c']}  no recorded job wrote this content "
                            "(a source, or edited by hand)"]


@needs_gcc
def test_log_file_json_is_a_tree(built):
    exec_id = executions(built)[0]["id"]
    tree = rl(built, "log", "prog", "--json").json()
    assert tree["path"] == "prog" and tree["digest"] == digest(built / "prog")
    assert tree["note"] == ""
    assert tree["made_by"]["rule"] == "prog"
    assert tree["made_by"]["commands"] == ["gcc -o prog prog.o lib.o"]
    assert tree["made_by"]["execution"] == exec_id
    assert [child["path"] for child in tree["inputs"]] == ["prog.o", "lib.o"]
    for child, source, number in zip(tree["inputs"], ("prog.c", "lib.c"), (3, 5)):
        assert child["digest"] == digest(built / child["path"])
        assert child["made_by"]["commands"] == [f"gcc -c {source}"]
        assert child["inputs"] == [{"path": source, "digest": digest(built / source),
                                    "id": number, "made_by": None, "note": "source",
                                    "from_depfile": False, "rebuilt": None,
                                    "hidden_inputs": 0, "inputs": []}]


@needs_gcc
def test_log_file_lists_every_file_with_read_write_flags(built):
    result = rl(built, "log", "--files")
    assert result.lines[0].split() == ["PATH", "MODE", "DIGEST", "WHEN"]
    rows = {}
    for line in result.lines[1:]:
        path, mode, short_digest, when = line.split()
        assert re.fullmatch(CLOCK, when), line
        rows[path] = (mode, short_digest)
    expected_modes = {"prog.c": "r", "lib.c": "r", "prog2.c": "r",
                      "prog.o": "rw", "lib.o": "rw", "prog2.o": "rw",
                      "prog": "w", "prog2": "w"}
    assert {path: mode for path, (mode, _) in rows.items()} == expected_modes, result.describe()
    assert {path: d for path, (_, d) in rows.items()} == \
        {path: short(built / path) for path in expected_modes}
    assert [line.split()[0] for line in result.lines[1:]] == sorted(expected_modes)


# --- clean ------------------------------------------------------------------------------

@needs_gcc
def test_clean_dry_run_then_clean_keeps_sources_and_hand_edits(built):
    with open(built / "prog2", "ab") as stream:
        stream.write(b"\0patched by hand")
    patched = (built / "prog2").read_bytes()
    before = {p.name: p.read_bytes() for p in built.iterdir() if p.is_file()}

    dry = rl(built, "clean", "--dry-run")
    assert sorted(dry.lines) == sorted(["prog: would remove", "prog.o: would remove",
                                        "lib.o: would remove", "prog2.o: would remove",
                                        "prog2: kept (changed since rlmake wrote it)"]), \
        dry.describe()
    assert {p.name: p.read_bytes() for p in built.iterdir() if p.is_file()} == before

    clean = rl(built, "clean")
    assert sorted(clean.lines) == sorted(["prog: removed", "prog.o: removed", "lib.o: removed",
                                          "prog2.o: removed",
                                          "prog2: kept (changed since rlmake wrote it)"]), \
        clean.describe()
    assert sorted(p.name for p in built.iterdir()) == \
        sorted([".rlmake", "Rulesfile.yaml", *SOURCES, "prog2"])
    assert (built / "prog2").read_bytes() == patched
    for source in SOURCES:
        assert (built / source).read_bytes() == (EXAMPLE / source).read_bytes()

    build = rl(built, "build", "-v")
    assert ran_targets(build) == JOBS, build.describe()
    run = subprocess.run(["./prog2"], cwd=built, capture_output=True, text=True, timeout=10)
    assert run.stdout == "Hello, prog2!\n"


@needs_gcc
def test_clean_a_target_removes_what_it_needs_only(built):
    clean = rl(built, "clean", "prog")
    assert sorted(clean.lines) == sorted(["lib.o: removed", "prog: removed", "prog.o: removed"]), \
        clean.describe()
    assert sorted(p.name for p in built.iterdir()) == \
        sorted([".rlmake", "Rulesfile.yaml", *SOURCES, "prog2", "prog2.o"])

    rest = rl(built, "clean")
    assert "prog2: removed" in rest.lines and "prog2.o: removed" in rest.lines, rest.describe()
    assert sorted(p.name for p in built.iterdir()) == sorted([".rlmake", "Rulesfile.yaml",
                                                             *SOURCES])
    assert "Rulesfile.yaml" not in rest.stdout and ".c" not in rest.stdout

    build = rl(built, "build", "-v")
    assert ran_targets(build) == JOBS, build.describe()
    assert all((built / job).exists() for job in JOBS)


def test_clean_before_any_build(tmp_path):
    root = write_rulesfile(tmp_path / "nothing", """
        rules:
          out.txt:
            command: echo > out.txt
        """)
    (root / "out.txt").write_text("mine\n")
    assert rl(root, "clean").lines == ["nothing to clean"]
    assert (root / "out.txt").read_text() == "mine\n"


# --- -C and -f --------------------------------------------------------------------------

@needs_gcc
def test_directory_and_rulesfile_options_before_and_after_the_command(built):
    outside = built.parent
    here = rl(built, "why", "prog")
    before = rl(outside, "-C", built.name, "why", "prog")
    after = rl(outside, "why", "-C", built.name, "prog")
    assert before.lines == after.lines == here.lines
    assert here.lines[0] == "prog: up to date"

    files = rl(built, "log", "--files").lines
    assert rl(built, "log", "-f", "Rulesfile.yaml", "--files").lines == files
    assert rl(outside, "-C", built.name, "log", "-f", "Rulesfile.yaml",
              "--files").lines == files
    assert len(files) == 9


# --- a big project ----------------------------------------------------------------------

def test_why_on_a_2000_job_project_that_is_up_to_date(tmp_path):
    root = tmp_path / "big"
    (root / "src").mkdir(parents=True)
    (root / "out").mkdir()
    count = 2000
    for index in range(count):
        (root / "src" / f"f{index}.txt").write_text(f"{index}\n")
    lines = ["rules:", "  all:", "    deps:"]
    lines += [f"      - out/f{index}.txt" for index in range(count)]
    lines += ['  "out/%.txt":', '    deps: ["src/%.txt"]',
              "    command: cp src/{{ stem }}.txt out/{{ stem }}.txt"]
    (root / "Rulesfile.yaml").write_text("\n".join(lines) + "\n")
    rl(root, "build")
    for index in range(count):
        assert (root / "out" / f"f{index}.txt").read_text() == f"{index}\n"
    assert rl(root, "why").stdout == "everything is up to date\n"
    assert rl(root, "why", "out/f1999.txt").lines[0] == "out/f1999.txt: up to date"


# --- bugs -------------------------------------------------------------------------------

@needs_gcc
def test_why_a_source_file(built):
    result = rl(built, "why", "lib.c", expect=None)
    assert "Traceback" not in result.stderr, result.describe()
    assert result.returncode in (0, 2), result.describe()
    assert "lib.c" in result.stdout + result.stderr


@needs_gcc
def test_why_last_build_cause_comes_from_the_same_or_an_earlier_execution(built):
    lib_c = built / "lib.c"
    old_c, old_o = short(lib_c), short(built / "lib.o")
    edit(lib_c, "Hello", "Goodbye")
    rl(built, "build")
    explained = executions(built)[0]["id"]
    new_c, new_o = short(lib_c), short(built / "lib.o")
    (built / "lib.o").unlink()
    rebuilt = rl(built, "build", "-v")
    assert ran_targets(rebuilt) == {"lib.o"}        # same bytes again: prog, prog2 are cached
    why = rl(built, "why", "prog")
    latest = executions(built)[0]["id"]
    assert why.lines == [
        f"prog: up to date (lib.o was rebuilt to identical bytes in {latest} at "
        f"{ran_at(built, latest, 'lib.o')}; prog kept)",
        f"prog: last built in {explained} at {ran_at(built, explained, 'prog')} "
        f"because lib.o changed ({old_o} -> {new_o})",
        f"  lib.o: rebuilt because lib.c changed ({old_c} -> {new_c})",
    ], why.describe()


@needs_gcc
def test_why_missing_intermediate_is_not_called_a_change(built):
    (built / "prog.o").unlink()
    why = rl(built, "why", "prog")
    assert "-> none" not in why.stdout, why.describe()
    assert why.lines[:2] == ["prog: may be rebuilt (if prog.o's bytes change)",
                             "  prog.o: will be rebuilt because output prog.o is missing"], \
        why.describe()
