"""Early cutoff as `why`, `log` and -v tell it: before a build, a job stale only because
a dep will be rebuilt *may* be rebuilt; after it, the dep that came out identical and
the jobs it kept are named.

In-process: builds with the fake executor and clock (tests/engine.py); `why` and `log`
through the CLI in-process (no command of the project runs)."""

from __future__ import annotations

import io
import json
from contextlib import closing

import pytest
from buildkit import build_env, run_in_process
from engine import Engine

from rlmake.explain import when
from rlmake.model import Job, Location, Outcome, Status
from rlmake.reporters.console import ConsoleReporter
from rlmake.state import StateDB

# lib.o ignores what lib.c says (as a compiler ignores a comment): any edit reruns it,
# and it comes out the same. lib.a and prog then stand only on lib.o's bytes.
RULES = """\
default: [prog]
rules:
  lib.o:
    deps: [lib.c]
    command: echo object code > lib.o
  main.o:
    deps: [main.c]
    command: cat main.c > main.o
  lib.a:
    deps: [lib.o]
    command: cat lib.o > lib.a
  prog:
    deps: [main.o, lib.a]
    command: cat main.o lib.a > prog
"""


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", RULES)
    engine.write("lib.c", "int f;\n")
    engine.write("main.c", "int main;\n")
    assert engine.build().status == "ok"
    return engine


def rl(engine: Engine, *args: str) -> str:
    status, out, err = run_in_process(list(args), engine.root, build_env())
    assert status == 0, out + err
    return out


def test_before_a_build_only_the_job_whose_inputs_changed_will_surely_run(engine):
    engine.write("lib.c", "int f; /* a comment */\n")
    lines = rl(engine, "why", "prog").splitlines()
    assert lines[:3] == [
        "prog: may be rebuilt (if lib.a's bytes change)",
        "  lib.a: may be rebuilt (if lib.o's bytes change)",
        "    lib.o: will be rebuilt because lib.c changed "
        f"({lines[2].split('(')[1].split(',')[0]}, edited "
        f"{when((engine.root / 'lib.c').stat().st_mtime)})",
    ]
    [answer] = json.loads(rl(engine, "why", "--json", "prog"))
    assert answer["next"]["will"] == "maybe"
    assert answer["next"]["causes"][0]["will"] == "maybe"
    assert answer["next"]["causes"][0]["causes"][0]["will"] == "rebuild"
    assert answer["last"]["will"] is None               # a history, not a forecast

    engine.write("main.c", "int main2;\n")
    [answer] = json.loads(rl(engine, "why", "--json", "prog"))
    assert answer["next"]["will"] == "maybe"
    assert answer["next"]["sentence"] == "may be rebuilt (if the bytes of main.o or lib.a change)"

    # a job with a change of its own will surely run, whatever its deps do
    engine.write("prog", "edited by hand\n")
    [answer] = json.loads(rl(engine, "why", "--json", "prog"))
    assert answer["next"]["will"] == "rebuild"
    assert answer["next"]["sentence"] == (
        "will be rebuilt because main.o will be rebuilt, lib.a may be rebuilt and output "
        "prog was changed since the last run wrote it")


def test_after_the_build_why_log_and_outcomes_name_the_cutoff(engine):
    engine.write("lib.c", "int f; /* a comment */\n")
    built = engine.build()
    assert built.ran == ["lib.o"]
    assert built.outcomes["lib.a"].status is Status.CACHED
    assert built.outcomes["lib.a"].kept_by == ("lib.o",)
    assert built.outcomes["prog"].kept_by == ()         # lib.a was not rebuilt at all

    with _state(engine) as state:
        [execution] = state.executions(1)
        rebuilt = state.last_success("lib.o")
    assert rebuilt.same_outputs is True and rebuilt.execution == execution.id

    lines = rl(engine, "why", "lib.a", "lib.o").splitlines()
    assert lines[0] == (f"lib.a: up to date (lib.o was rebuilt to identical bytes in "
                        f"{execution.id} at {when(rebuilt.started)}; lib.a kept)")
    assert lines[3].startswith(f"lib.o: last built to identical bytes in {execution.id} at ")

    log = rl(engine, "log", "-").splitlines()
    assert log[2].startswith("  lib.o  done ") and log[2].endswith(
        "lib.c changed (" + log[2].split("(")[1].split(")")[0] + "); rebuilt to identical bytes")
    assert log[3] == "  lib.a  kept             lib.o was rebuilt to identical bytes; lib.a kept"
    assert len(log) == 4
    data = json.loads(rl(engine, "log", "-", "--json"))
    assert data["kept"] == [{"target": "lib.a", "identical_deps": ["lib.o"]}]
    assert [run["same_outputs"] for run in data["runs"]] == [True]

    # a later rebuild to different bytes is no cutoff: lib.a runs and nothing is kept
    engine.write("Rulesfile.yaml", RULES.replace("echo object code", "echo new code"))
    again = engine.build()
    assert again.ran == ["lib.o", "lib.a", "prog"]
    assert rl(engine, "why", "lib.a").splitlines()[0] == "lib.a: up to date"
    assert "kept" not in rl(engine, "log", "-")


def _state(engine: Engine) -> closing[StateDB]:
    return closing(StateDB(str(engine.root / ".rlmake"), readonly=True))


def test_verbose_says_which_dep_kept_a_job():
    out = io.StringIO()
    reporter = ConsoleReporter(out, io.StringIO(), verbose=True, status_line=False)
    job = Job("prog", "prog", Location("Rulesfile.yaml"), ("prog",), ("lib.o", "main.o"),
              ("link",))
    reporter.job_finished(Outcome(job, Status.CACHED, kept_by=("lib.o",)))
    reporter.job_finished(Outcome(job, Status.CACHED))
    assert out.getvalue().splitlines() == [
        "Cached prog: lib.o was rebuilt to identical bytes; prog kept",
        "Cached prog: cached result is up to date"]


def test_a_dep_that_changes_on_every_build_is_no_maybe(tmp_path):
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", """\
rules:
  stamp:
    phony: true
    always: true
    command: "true"
  out:
    deps: [stamp]
    command: echo x > out
""")
    assert engine.build("out").status == "ok"
    [answer] = json.loads(rl(engine, "why", "--json", "out"))
    assert answer["next"]["will"] == "rebuild", answer["next"]
