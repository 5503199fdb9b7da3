"""Ways a build could take a wrong output for a good one, through the real CLI."""

from __future__ import annotations

import json
import signal

import pytest
from buildkit import finish, kill_group

pytestmark = pytest.mark.integration

# The command reads its input, then waits for the test to say go, then reads it again.
WAITS_FOR_GO = """
    rules:
      out.txt:
        deps: [in.txt]
        command: >-
          cat in.txt > out.txt; touch reached;
          i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.02; i=$((i+1)); done;
          cat in.txt >> out.txt
"""


def test_an_input_edited_while_its_job_runs_fails_the_job_and_reruns_next_time(fresh_proj):
    fresh_proj.rules(WAITS_FOR_GO)
    fresh_proj.write("in.txt", "old\n")
    process = fresh_proj.start()
    try:
        fresh_proj.wait_for("reached")
        fresh_proj.write("in.txt", "new\n")
        fresh_proj.write("go", "")
        result = finish(process)
    finally:
        kill_group(process)
    assert result.returncode == 1, result.describe()
    assert "input 'in.txt' changed while the command ran" in result.stderr
    assert not fresh_proj.exists("out.txt")         # old and new bytes mixed: removed
    again = fresh_proj.build()
    assert again.ran == {"out.txt"} and fresh_proj.read("out.txt") == "new\nnew\n"
    fresh_proj.write("in.txt", "old\n")             # back to the first content: rerun,
    fresh_proj.build()                              # never a restore of the mix
    assert fresh_proj.read("out.txt") == "old\nold\n"
    assert fresh_proj.build().ran == set()


def test_a_command_that_does_not_write_its_output_fails_and_clean_keeps_the_file(proj):
    proj.rules("""
        rules:
          report.txt:
            deps: [in.txt]
            command: echo forgot to write it
    """)
    proj.write("in.txt", "x\n")
    proj.write("report.txt", "mine\n")
    result = proj.build(expect=1)
    assert "did not write output 'report.txt'" in result.stderr, result.describe()
    assert proj.read("report.txt") == "mine\n"
    proj.build(expect=1)                            # never counted as up to date
    proj.cli("clean")
    assert proj.read("report.txt") == "mine\n"


def test_a_directory_output_is_a_clear_failure_and_is_never_deleted(proj):
    proj.rules("""
        rules:
          results:
            deps: [in.txt]
            command: mkdir -p results && cp in.txt results/a.txt
    """)
    proj.write("in.txt", "x\n")
    result = proj.build(expect=1)
    assert "output 'results' is a directory" in result.stderr, result.describe()
    assert proj.read("results/a.txt") == "x\n"
    proj.cli("clean")
    assert proj.read("results/a.txt") == "x\n"


def test_two_outputs_of_one_rule_asked_together(proj):
    proj.rules("""
        rules:
          out1:
            outputs: [out2]
            command: echo a > out1; echo b > out2; echo ran >> ran.log
    """)
    proj.build("out1", "out2")
    assert proj.take_log() == ["ran"]
    proj.noop("out2", "out1")


def test_an_interrupted_build_reports_interrupted_and_counts_unrun_jobs(fresh_proj):
    fresh_proj.rules("""
        rules:
          all: {deps: [slow.txt, later.txt]}
          slow.txt:
            command: >-
              touch reached; i=0; while [ $i -lt 600 ]; do sleep 0.02; i=$((i+1)); done;
              echo done > slow.txt
          later.txt: {deps: [slow.txt], command: cp slow.txt later.txt}
    """)
    process = fresh_proj.start("--report", "report.json")
    try:
        fresh_proj.wait_for("reached")
        process.send_signal(signal.SIGINT)
        result = finish(process)
    finally:
        kill_group(process)
    assert result.returncode == 130, result.describe()
    assert "nothing to do" not in result.stdout + result.stderr
    report = json.loads(fresh_proj.read("report.json"))
    assert report["status"] == "interrupted"
    assert {job["target"]: job["status"] for job in report["jobs"]} == \
        {"slow.txt": "interrupted", "later.txt": "interrupted"}
