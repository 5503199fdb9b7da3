"""An executor that goes away mid-build (a Dask scheduler killed) is its own failure, not
a failed command: the build stops at once, the jobs that were running are `lost` (their
half-written outputs removed, nothing recorded), the rest skipped; ExecutorLost exits 3;
the JSON report and JUnit say so. In-process, with a fake executor and clock."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import run_cli, write_project
from engine import Recording
from fakes import FakeClock, FakeExecutor

from rlmake.errors import ExecutorLost
from rlmake.executors import WORKER_WAIT_SECONDS
from rlmake.model import BuildOptions
from rlmake.project import Project
from rlmake.reporters.fanout import FanOut
from rlmake.reporters.json_report import JsonReport
from rlmake.reporters.junit import JUnitReport

GONE = "the Dask scheduler at tcp://sched:8786 went away: rlmake lost its connection to it"

FOUR = """
rules:
  all:
    deps: [a.txt, b.txt, c.txt, d.txt]
  a.txt: {command: "echo a > a.txt"}
  b.txt: {command: "echo b > b.txt"}
  c.txt: {command: "echo c > c.txt"}
  d.txt: {command: "echo d > d.txt"}
"""


class LosingExecutor(FakeExecutor):
    """Runs `runs` tasks, then its cluster goes away: the first task still in flight had
    written half its output (a command on a worker), and `wait` raises ExecutorLost."""

    def __init__(self, clock: FakeClock, runs: int):
        super().__init__(clock)
        self.runs = runs

    def wait(self, timeout=None):
        if len(self.ran) < self.runs:
            return super().wait(timeout)
        if self._queued:
            task = self._queued[0]
            for output in task.outputs:
                (Path(task.cwd) / output).write_text("half\n")
        raise ExecutorLost(GONE)


def build(root: Path, executor: FakeExecutor, clock: FakeClock, tmp_path: Path, **options):
    project = Project(str(root))
    config = project.build_config(BuildOptions(jobs=2, **options), local_cache=False,
                                  cache_url=None)
    reporter = FanOut(Recording(), JsonReport(str(tmp_path / "report.json")),
                      JUnitReport(str(tmp_path / "junit.xml")))
    project.build([], config, reporter, executor=executor, clock=clock)


def test_a_lost_executor_stops_the_build_and_records_no_running_job(tmp_path):
    root = write_project(tmp_path / "proj", FOUR)
    clock = FakeClock()
    build(root, FakeExecutor(clock), clock, tmp_path)            # everything built once
    clock.advance(1)
    first = {name: (root / name).read_text() for name in ("a.txt", "b.txt", "c.txt", "d.txt")}

    losing = LosingExecutor(clock, runs=1)
    with pytest.raises(ExecutorLost) as caught:
        build(root, losing, clock, tmp_path, force=True)
    assert caught.value.exit_code == 3
    assert str(caught.value) == GONE

    # -j2: a ran; b and c were in flight (b half written); d was never started
    report = json.loads((tmp_path / "report.json").read_text())
    statuses = {job["target"]: job["status"] for job in report["jobs"]}
    assert losing.ran == ["a.txt"]
    assert statuses == {"a.txt": "done", "b.txt": "lost", "c.txt": "lost", "d.txt": "skipped"}
    assert not (root / "b.txt").exists(), "a half-written output was left behind"
    assert (root / "c.txt").read_text() == first["c.txt"]      # untouched: kept
    assert (root / "d.txt").read_text() == first["d.txt"]

    last = json.loads(run_cli(["log", "-", "--json"], cwd=root).stdout)
    assert last["status"] == "failed" and last["failed"] == 0, last
    assert [run["target"] for run in last["runs"]] == ["a.txt"], last

    again = FakeExecutor(clock)
    build(root, again, clock, tmp_path)
    assert again.ran == ["b.txt"], "only the job whose output was removed runs again"


def test_the_reports_call_it_an_executor_failure(tmp_path):
    root = write_project(tmp_path / "proj", FOUR)
    clock = FakeClock()
    with pytest.raises(ExecutorLost):
        build(root, LosingExecutor(clock, runs=1), clock, tmp_path)

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "executor failed"
    assert report["counts"]["lost"] == 2 and report["counts"]["failed"] == 0
    lost = [job for job in report["jobs"] if job["status"] == "lost"]
    assert {job["error"] for job in lost} == {GONE}
    assert all(job["exit_code"] is None for job in lost)

    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "2", "1")
    errors = {case.get("name"): case.find("error") for case in suite.iter("testcase")
              if case.find("error") is not None}
    assert set(errors) == {"b.txt", "c.txt"}
    assert {(e.get("type"), e.get("message")) for e in errors.values()} == {("executor", GONE)}


def test_the_console_says_nothing_per_lost_job(tmp_path, capsys):
    """The one message is ExecutorLost's, which the CLI prints; no FAILED: lines."""
    from rlmake.reporters.console import ConsoleReporter

    root = write_project(tmp_path / "proj", FOUR)
    clock = FakeClock()
    project = Project(str(root))
    config = project.build_config(BuildOptions(jobs=2), local_cache=False, cache_url=None)
    with pytest.raises(ExecutorLost):
        project.build([], config, ConsoleReporter(status_line=False, color=False),
                      executor=LosingExecutor(clock, runs=1), clock=clock)
    said = capsys.readouterr()
    assert "FAILED" not in said.err and GONE not in said.err, said
    assert "JOB STATUS" in said.out


# --- settings: the wait for workers, and distributed's own log lines ---------------------------------

def test_the_worker_wait_can_be_set_for_dask_builds_only(tmp_path, monkeypatch):
    root = write_project(tmp_path / "proj", "rules:\n  all:\n    deps: [in.txt]\n",
                         {"in.txt": "in\n"})
    project = Project(str(root))
    assert project.build_config(executor="dask").executor.worker_wait == WORKER_WAIT_SECONDS
    monkeypatch.setenv("RLMAKE_DASK_WORKER_WAIT", "120")
    assert project.build_config(executor="dask").executor.worker_wait == 120.0
    for bad in ("soon", "-1", "nan", "inf", ""):
        monkeypatch.setenv("RLMAKE_DASK_WORKER_WAIT", bad)
        result = run_cli(["build", "--executor", "dask", "--scheduler", "tcp://h:8786"],
                         cwd=root)
        assert result.exit_code == 2, result.describe()
        assert f"RLMAKE_DASK_WORKER_WAIT='{bad}': give a number of seconds" in result.stderr
        assert project.build_config(executor="local").executor.kind == "local"


def test_without_v_distributed_logs_nothing_below_critical_and_with_v_as_it_was():
    pytest.importorskip("distributed")
    from rlmake.executors.dask import _quiet_cluster_logs, _restore_log_levels

    client, comm = logging.getLogger("distributed.client"), logging.getLogger("distributed.comm.x")
    before = (logging.getLogger("distributed").level, client.level)
    replaced = _quiet_cluster_logs()
    try:
        assert not client.isEnabledFor(logging.ERROR)       # its own level, set by distributed
        assert not comm.isEnabledFor(logging.ERROR)         # inherited
        assert client.isEnabledFor(logging.CRITICAL)
    finally:
        _restore_log_levels(replaced)
    assert (logging.getLogger("distributed").level, client.level) == before


def test_v_reaches_the_executor_settings(tmp_path):
    root = write_project(tmp_path / "proj", "rules:\n  all:\n    deps: [in.txt]\n",
                         {"in.txt": "in\n"})
    project = Project(str(root))
    assert project.build_config(executor="dask", verbose=True).executor.cluster_logs
    assert not project.build_config(executor="dask").executor.cluster_logs
