"""`rlmake build --trace FILE`: a Chrome trace (JSON Object Format) of the build, through the
real CLI: one complete event per job on a parallel slot (slots never overlap), restores
and failures as their own categories, rlmake's phases on a track of their own; written
when the build fails and when it is interrupted too."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from collections import defaultdict

import pytest
from buildkit import HOLD, Project, build_env, finish, kill_group
from checkout import ROOT

from conftest import write_project
from rlmake.reporters.base import Phase

pytestmark = pytest.mark.integration

# a and b run at once (-j 3, always: true so they never come from the cache); c needs a
# and fails (again: its last run failed, so it is not looked up); r is restored from the
# local cache once its output is removed; m's source changes: looked up, missed, run.
RULES = """
rules:
  all: {deps: [a, b, c, r, m]}
  a: {always: true, command: "sleep 0.3; echo a > a"}
  b: {always: true, command: "sleep 0.3; echo b > b"}
  c: {deps: [a], command: "echo broken; exit 3"}
  r: {deps: [src.txt], command: "cp src.txt r"}
  m: {deps: [m.txt], command: "cp m.txt m"}
"""


def slices(trace: dict) -> list[dict]:
    """Every slice on a slot: jobs, and the cache lookups that missed before them."""
    return [event for event in trace["traceEvents"] if event["ph"] == "X" and event["tid"] != 0]


def jobs_of(trace: dict) -> dict[str, dict]:
    return {event["name"]: event for event in slices(trace) if event["cat"] != "cache lookup"}


def lookups_of(trace: dict) -> dict[str, dict]:
    return {event["args"]["target"]: event for event in slices(trace)
            if event["cat"] == "cache lookup"}


def phases_of(trace: dict) -> list[str]:
    return [event["name"] for event in trace["traceEvents"]
            if event["ph"] == "X" and event["tid"] == 0]


def assert_slots_never_overlap(trace: dict) -> None:
    by_slot = defaultdict(list)
    for event in slices(trace):
        by_slot[event["tid"]].append((event["ts"], event["ts"] + event["dur"], event["name"]))
    for slot, spans in by_slot.items():
        spans.sort()
        for (_, end, name), (start, _, after) in itertools.pairwise(spans):
            assert start >= end, f"{name} and {after} overlap on slot {slot}"


def thread_names(trace: dict) -> dict[int, str]:
    return {event["tid"]: event["args"]["name"] for event in trace["traceEvents"]
            if event["ph"] == "M" and event["name"] == "thread_name"}


def test_trace_of_a_parallel_build_with_a_failure_and_a_restore(cached_proj):
    proj = cached_proj
    proj.rules(RULES)
    proj.write("src.txt", "source\n")
    proj.write("m.txt", "one\n")
    proj.build("-k", "-j", "3", expect=1)
    (proj.root / "r").unlink()              # its result is in the local cache
    proj.write("m.txt", "two\n")
    result = proj.build("-k", "-j", "3", "--trace", "out/trace.json", expect=1)

    trace = json.loads(proj.read("out/trace.json"))
    jobs = jobs_of(trace)
    assert sorted(jobs) == ["a", "b", "c", "m", "r"], result.describe()  # not the aggregate
    lookups = lookups_of(trace)
    # a and b are `always`, c failed last time; r's lookup is its restore
    assert sorted(lookups) == ["m"]
    assert lookups["m"]["tid"] == jobs["m"]["tid"]
    assert lookups["m"]["ts"] + lookups["m"]["dur"] <= jobs["m"]["ts"]
    assert len(slices(trace)) == 6
    assert {name: e["cat"] for name, e in jobs.items()} == {
        "a": "done", "b": "done", "c": "failed", "m": "done", "r": "restored"}
    assert jobs["r"]["args"]["cache_source"] == "local cache"
    assert jobs["c"]["args"] == {"rule": "c", "target": "c", "status": "failed",
                                 "reasons": ["its last run failed"], "exit_code": 3,
                                 "cache_source": None}
    assert jobs["a"]["args"]["reasons"] == ["always: true"]
    assert jobs["a"]["tid"] != jobs["b"]["tid"]         # they ran at once
    assert jobs["c"]["ts"] >= jobs["a"]["ts"] + jobs["a"]["dur"]
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in trace["traceEvents"] if e["ph"] == "X")
    assert_slots_never_overlap(trace)
    assert phases_of(trace) == [phase.value for phase in Phase]
    names = thread_names(trace)
    assert names[0] == "rlmake"
    assert {names[e["tid"]] for e in jobs.values()} <= {f"slot {n}" for n in range(1, 5)}
    assert trace["otherData"]["status"] == "failed"


def test_trace_of_a_no_op_build_lists_every_job_as_up_to_date(tmp_path):
    proj = Project(tmp_path / "proj", aged=True)       # aged: the no-op fast path
    proj.rules("""
        rules:
          all: {deps: [x, y]}
          x: {command: "echo x > x"}
          y: {command: "echo y > y"}
        """)
    proj.build()
    proj.noop()                             # takes the snapshot the next one goes by
    proj.build("--trace", "t.json")
    trace = json.loads(proj.read("t.json"))
    assert {name: e["cat"] for name, e in jobs_of(trace).items()} == {"x": "cached",
                                                                     "y": "cached"}
    assert phases_of(trace) == [Phase.PLAN.value, Phase.DECIDE.value, Phase.RECORD.value]
    assert_slots_never_overlap(trace)


def test_trace_is_written_when_the_build_is_interrupted(fresh_proj):
    fresh_proj.rules(f"""
        rules:
          all: {{deps: [held, later]}}
          held: {{command: "{HOLD}; echo > held"}}
          later: {{deps: [held], command: "echo > later"}}
        """)
    process = fresh_proj.start("--trace", "t.json", env=build_env())
    try:
        fresh_proj.wait_for("started")
        process.send_signal(signal.SIGTERM)
        result = finish(process, timeout=20)
    finally:
        kill_group(process)
    assert result.returncode == 130, result.describe()
    trace = json.loads(fresh_proj.read("t.json"))
    jobs = jobs_of(trace)
    assert {name: e["cat"] for name, e in jobs.items()} == {"held": "interrupted",
                                                           "later": "interrupted"}
    assert jobs["held"]["dur"] > 0              # it ran until the build stopped
    assert jobs["later"]["dur"] == 0            # it never started
    assert phases_of(trace) == [Phase.PLAN.value, Phase.DECIDE.value, Phase.RUN.value]
    assert trace["otherData"]["status"] == "interrupted"
    assert_slots_never_overlap(trace)
    assert not [p for p in fresh_proj.root.iterdir() if p.name.startswith(".t.json")]


NEW_MODULES = {"rlmake.report", "rlmake.reporters.trace", "rlmake.reporters.reportfile",
               "rlmake.reporters.fanout"}
PROBE = """
import json, sys
from rlmake.cli import main
try:
    main(["-C", sys.argv[1], "build", *sys.argv[2:]], standalone_mode=False)
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_of_a_build(project, *args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(project), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_a_no_op_build_without_trace_imports_nothing_of_it(tmp_path):
    project = write_project(tmp_path, """
        rules:
          out: {deps: [in.txt], command: "cp in.txt out"}
        """, {"in.txt": "x\\n"})
    modules_of_a_build(project)
    loaded = modules_of_a_build(project)
    assert not [m for m in loaded if m in NEW_MODULES or m.startswith("rlmake.report.")]
    traced = modules_of_a_build(project, "--trace", str(tmp_path / "t.json"))
    assert "rlmake.reporters.trace" in traced       # the probe sees it when asked for

