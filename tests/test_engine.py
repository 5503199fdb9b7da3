"""The engine in-process: real files and state, the fake executor and clock (fakes.py).

Each test here would need real processes and sleeps through the CLI; here it takes
milliseconds and no timing can make it flaky."""

from __future__ import annotations

import pytest
from engine import Engine
from fakes import FakeExecutor

from rlmake.model import Status
from rlmake.project import Project
from rlmake.reporters.reportfile import build_status


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


COPY = """\
rules:
  out:
    deps: [in.txt]
    command: cat in.txt > out
"""


def test_a_second_build_runs_nothing(engine):
    engine.write("Rulesfile.yaml", COPY)
    engine.write("in.txt", "one\n")
    assert engine.build().ran == ["out"]
    assert engine.read("out") == "one\n"
    assert engine.build().ran == []


def test_two_outputs_of_one_rule_asked_together_are_one_job(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  out1:
    outputs: [out2]
    command: echo a > out1; echo b > out2
""")
    built = engine.build("out1", "out2")
    assert built.status == "ok" and built.ran == ["out1"]
    assert engine.build("out2", "out1").ran == []


# --- an input edited while its job runs -------------------------------------------------

def test_an_input_edited_while_its_job_runs_is_not_recorded(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  out:
    deps: [in.txt]
    command: [cat in.txt > out, cat in.txt >> out]
""")
    engine.write("in.txt", "old\n")
    executor = FakeExecutor(engine.clock, during={"out": lambda task: engine.write("in.txt", "new\n")})
    built = engine.build(executor=executor)
    assert built.status == "failed"
    assert "input 'in.txt' changed while the command ran" in built.outcomes["out"].error
    assert not (engine.root / "out").exists()          # mixed content never passes for good
    again = engine.build()
    assert again.ran == ["out"] and engine.read("out") == "new\nnew\n"
    engine.write("in.txt", "old\n")                     # reverting must not restore the mix
    assert engine.build().ran == ["out"] and engine.read("out") == "old\nold\n"


def test_an_input_edited_and_put_back_while_its_job_runs_still_counts(engine):
    """The bytes are as they were when the job ends, but the command may have read the
    edit in between: any write to an input during its job fails the job."""
    engine.write("Rulesfile.yaml", COPY.replace("command: cat in.txt > out",
                                                "command: [cat in.txt > out, 'true']"))
    engine.write("in.txt", "old\n")

    def edit_and_undo(task):
        engine.write("in.txt", "new\n")
        engine.write("in.txt", "old\n")
    built = engine.build(executor=FakeExecutor(engine.clock, during={"out": edit_and_undo}))
    assert built.status == "failed"
    assert "input 'in.txt' changed while the command ran" in built.outcomes["out"].error
    assert engine.build().ran == ["out"]
    assert engine.build().ran == []


# --- a declared output the command did not write ----------------------------------------

def test_a_command_that_does_not_write_its_output_fails_and_keeps_the_users_file(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  out:
    deps: [in.txt]
    command: "true"
""")
    engine.write("in.txt", "x\n")
    engine.write("out", "the user's own file\n")
    built = engine.build()
    assert built.status == "failed"
    assert "did not write output 'out'" in built.outcomes["out"].error
    assert engine.read("out") == "the user's own file\n"
    assert engine.build().status == "failed"            # still not up to date


def test_a_write_if_changed_generator_keeps_working(engine):
    engine.write("Rulesfile.yaml", """\
vars: {mode: write}
rules:
  out:
    deps: [in.txt]
    command: "{{ 'cat in.txt > out' if mode == 'write' else 'true' }}"
""")
    engine.write("in.txt", "x\n")
    assert engine.build().ran == ["out"]
    # the command changes, and leaves the output as the earlier run wrote it
    built = engine.build(overrides={"mode": "keep"})
    assert built.status == "ok" and built.ran == ["out"]
    assert engine.build(overrides={"mode": "keep"}).ran == []


def test_a_directory_as_output_fails_clearly(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  outdir:
    deps: [in.txt]
    command: mkdir -p outdir
""")
    engine.write("in.txt", "x\n")
    built = engine.build()
    assert built.status == "failed"
    assert "output 'outdir' is a directory" in built.outcomes["outdir"].error
    assert (engine.root / "outdir").is_dir()            # never deleted: rlmake deletes files only


# --- deep chains ------------------------------------------------------------------------------

def test_a_chain_of_500_aggregates_builds_and_surveys(engine):
    rules = ["rules:", "  top:", "    deps: [r0]", "    command: echo done > top"]
    for i in range(500):
        rules += [f"  r{i}:", f"    deps: [r{i + 1}]" if i < 499 else "    deps: [src.txt]"]
    engine.write("Rulesfile.yaml", "\n".join(rules) + "\n")
    engine.write("src.txt", "s\n")
    assert engine.build("top").ran == ["top"]
    engine.write("src.txt", "changed\n")
    assert engine.build("top", dry_run=True).of(Status.WOULD_RUN) == {"top"}
    assert engine.build("top").ran == ["top"]


# --- interrupted builds -------------------------------------------------------------------

def test_an_interrupted_build_says_so_and_the_next_finishes_the_work(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  all:
    deps: [a, b, c]
  a: {deps: [in.txt], command: cat in.txt > a}
  b: {deps: [a], command: cat a > b}
  c: {deps: [b], command: cat b > c}
""")
    engine.write("in.txt", "x\n")
    built = engine.build(executor=FakeExecutor(engine.clock, interrupt_at=2))
    assert built.status == "interrupted"
    assert built.of(Status.DONE) == {"a"}
    assert built.of(Status.INTERRUPTED) == {"b", "c"}
    assert build_status(list(built.outcomes.values())) == "interrupted"
    assert engine.build().ran == ["b", "c"]
    assert engine.build().ran == []


def test_why_answers_for_the_job_that_makes_an_extra_output(engine):
    """`why OUT` for an extra output explains the job that writes it (was a KeyError)."""
    engine.write("Rulesfile.yaml", """\
rules:
  t1:
    deps: [in.txt]
    outputs: [t1.x]
    command: cp in.txt t1; cp in.txt t1.x
""")
    engine.write("in.txt", "a\n")
    assert engine.build().ran == ["t1"]
    engine.write("in.txt", "b\n")
    [(now, last)] = Project(str(engine.root)).why(["t1.x", "t1"])
    assert now.target == "t1" and now.sentence.startswith("will be rebuilt because in.txt changed")
    assert last is not None and last.target == "t1"


def test_a_fault_inside_the_build_loop_stops_the_running_commands(engine, monkeypatch):
    """An exception of rlmake's own, not only Ctrl-C, cancels what runs."""
    engine.write("Rulesfile.yaml", COPY)
    engine.write("in.txt", "x\n")
    executor = FakeExecutor(engine.clock)

    def broken_wait(timeout=None):
        raise RuntimeError("a bug")
    monkeypatch.setattr(executor, "wait", broken_wait)
    with pytest.raises(RuntimeError):
        engine.build(executor=executor)
    assert executor.cancelled
