"""What `rlmake report` and `--trace` compute in Python, in-process: parallel slots, the
critical path, cache hit rates, and JSON that cannot end the <script> it sits in."""

from __future__ import annotations

import json

import pytest

from rlmake.model import ExecutionStatus, JobInputs, RunRecord, Status
from rlmake.report.page import embedded_json, render
from rlmake.report.slots import assign_slots
from rlmake.report.timeline import critical_path, report_data
from rlmake.state import CacheUse, Execution


@pytest.mark.parametrize("intervals, expected", [
    ([], []),
    ([(0, 1), (0, 1), (0, 1)], [0, 1, 2]),
    ([(0, 1), (1, 2), (2, 3)], [0, 0, 0]),                 # touching is not overlapping
    ([(0, 4), (1, 2), (2, 3), (3, 5)], [0, 1, 1, 1]),
    ([(0, 3), (0, 1), (1, 2), (0.5, 4)], [1, 0, 0, 2]),    # ties: the shorter first
    ([(5, 6), (0, 10), (1, 2)], [1, 0, 1]),               # order given is kept, start decides
    ([(0, 2), (0, 2), (2, 3), (1, 3)], [0, 1, 0, 2]),      # the lowest free slot first
])
def test_assign_slots(intervals, expected):
    assert assign_slots(intervals) == expected


def run(target: str, started: float, ended: float, deps=(), status=Status.DONE,
        outputs=None, source=None, tail="") -> RunRecord:
    inputs = JobInputs(("make " + target,), {}, tuple(outputs or (target,)),
                       tuple((dep, "d") for dep in deps), {}, {})
    return RunRecord("e1", target, f"rule-{target}", "k", status, (), started, ended,
                     0, inputs, tail, cache_source=source)


def test_critical_path_is_the_longest_chain_by_duration_not_by_length():
    runs = [run("a", 0, 1), run("b", 0, 5), run("c", 1, 2, deps=["a"]),
            run("d", 2, 3, deps=["c"]), run("e", 5, 6, deps=["b"])]
    assert [runs[i].target for i in critical_path(runs)] == ["b", "e"]      # 6 s > a, c, d's 3 s


def test_critical_path_follows_outputs_and_ignores_deps_not_run():
    runs = [run("lib", 0, 2, outputs=["lib.o", "lib.h"]),
            run("prog", 2, 3, deps=["lib.h", "prog.c", "never-ran"])]
    assert critical_path(runs) == [0, 1]
    assert critical_path([]) == []


def test_records_that_say_a_dep_ended_after_its_reader_make_no_cycle():
    runs = [run("a", 0, 5, deps=["b"]), run("b", 0, 1, deps=["a"])]
    assert critical_path(runs) in ([0], [1, 0])


def test_report_data_counts_and_cache_rates():
    runs = [run("a", 10, 11, source="local cache", status=Status.RESTORED),
            run("b", 10, 12, source="s3://bucket/x", status=Status.RESTORED),
            run("c", 11, 13, status=Status.FAILED), run("d", 10, 10.5)]
    execution = Execution("e1", 10, 13, ["rlmake", "build"], ExecutionStatus.FAILED,
                          ran=1, cached=7, failed=1, restored=2)
    data = report_data(execution, runs, CacheUse(restored=2, misses=2))
    assert data["counts"] == {"done": 1, "restored": 2, "failed": 1, "cached": 7}
    assert data["cache"] == {"lookups": 4, "local_hits": 1, "shared_hits": 1,
                             "shared_stores": ["s3://bucket/x"], "local_rate": 0.25,
                             "shared_rate": 0.25}
    assert [job["slot"] for job in data["jobs"]] == [1, 2, 0, 0]
    assert data["slowest_jobs"][:2] == [1, 2]
    assert data["jobs"][0]["start"] == 0 and data["execution"]["elapsed"] == 3
    none = report_data(execution, [], CacheUse())
    assert none["cache"]["local_rate"] is None and none["critical"] == []


def test_embedded_json_cannot_end_its_script():
    hostile = {"output": "</script><script>alert(1)</script><!-- </SCRIPT \u2028"}
    text = embedded_json(hostile)
    assert "<" not in text
    assert json.loads(text) == hostile


def test_the_page_has_no_reference_to_the_network():
    execution = Execution("e1", 10, 13, ["rlmake", "build"], ExecutionStatus.SUCCEEDED,
                          ran=1, cached=0, failed=0)
    page = render(report_data(execution, [run("a", 10, 11, tail="</script>")], CacheUse()))
    text = page.decode()
    assert text.count("</script>") == 2                 # the data's own was escaped
    for remote in ("http://", "https://", "//cdn", "src=", "@import"):
        assert remote not in text.lower(), remote
