"""A Dask build whose every worker is gone stops after the worker wait, instead of waiting
for ever: ExecutorLost (exit 3) with a message that says what to do. A worker that comes
back in time lets it go on."""

from __future__ import annotations

import subprocess
import time
from types import SimpleNamespace

import pytest

from buildkit import build_env, finish, kill_group, rlmake_exe
from test_dask_executor import running_cluster

from rlmake.errors import ExecutorLost
from rlmake.executors import dask as dask_executor


class FakeClient:
    def __init__(self):
        self.workers: dict[str, dict] = {"tcp://w1": {}}

    def scheduler_info(self, n_workers: int = -1) -> dict:
        return {"workers": dict(self.workers)}


def executor_waiting_on(tasks: int, wait: float, monkeypatch):
    """A DaskExecutor with `tasks` submitted and a fake client and clock: (it, client, clock)."""
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(dask_executor, "time", SimpleNamespace(monotonic=lambda: clock.now))
    executor = object.__new__(dask_executor.DaskExecutor)
    client = FakeClient()
    executor.client = client
    executor.address = "tcp://sched:8786"
    executor._lock = dask_executor.threading.Lock()
    executor._futures = {f"job{i}": object() for i in range(tasks)}
    executor._lost = None
    executor._worker_wait = wait
    executor._workerless = dask_executor._Absence(wait)
    executor._workers_asked = 0.0
    return executor, client, clock


def seconds_pass(executor, clock, seconds: int) -> None:
    """`seconds` of waiting on the cluster, the executor looking once a second."""
    for _ in range(seconds):
        clock.now += 1.0
        executor._check_workers()


def test_no_worker_for_longer_than_the_wait_ends_the_build(monkeypatch):
    executor, client, clock = executor_waiting_on(2, 10.0, monkeypatch)
    executor._check_workers()
    client.workers.clear()
    seconds_pass(executor, clock, 10)   # ten seconds without a worker: still waiting
    clock.now += 1.5
    with pytest.raises(ExecutorLost) as lost:
        executor._check_workers()
    message = str(lost.value)
    assert "tcp://sched:8786 has had no worker for 10 s, with 2 jobs waiting" in message
    assert "RLMAKE_DASK_WORKER_WAIT" in message and "--executor local" in message


def test_a_worker_back_in_time_restarts_the_count(monkeypatch):
    executor, client, clock = executor_waiting_on(1, 10.0, monkeypatch)
    client.workers.clear()
    seconds_pass(executor, clock, 8)
    client.workers["tcp://w2"] = {}
    seconds_pass(executor, clock, 1)
    client.workers.clear()
    seconds_pass(executor, clock, 9)    # nine more seconds: not ten in a row


def test_with_no_job_waiting_no_worker_is_fine(monkeypatch):
    executor, client, clock = executor_waiting_on(0, 1.0, monkeypatch)
    client.workers.clear()
    seconds_pass(executor, clock, 5)


def test_the_scheduler_is_asked_once_a_second_at_most(monkeypatch):
    executor, client, clock = executor_waiting_on(1, 10.0, monkeypatch)
    asked = []
    client.scheduler_info = lambda n_workers=-1: asked.append(clock.now) or {"workers": {}}
    for _ in range(50):
        clock.now += 0.05
        executor._check_workers()
    assert len(asked) == 3, asked       # at 100.05, 101.05 and 102.05 (not at every wait)


@pytest.mark.integration
def test_a_build_whose_only_worker_died_exits_3_and_says_why(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "Rulesfile.yaml").write_text(
        "rules:\n  out.txt:\n    command: 'touch started; sleep 30; echo late > out.txt'\n")
    (project / "rlmake.toml").write_text("[cache]\nlocal = false\n")
    with running_cluster(tmp_path / "cluster", workers=1) as cluster:
        build = subprocess.Popen(
            [*rlmake_exe(), "build", "--executor", "dask", "--scheduler", cluster.address],
            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=build_env(RLMAKE_DASK_WORKER_WAIT="2"), start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not (project / "started").exists():       # the job runs on the worker
                assert build.poll() is None, finish(build).describe()
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.05)
            cluster.kill(cluster.workers[0])
            result = finish(build, timeout=30)
        finally:
            kill_group(build)
    assert result.returncode == 3, result.describe()
    assert "has had no worker for 2 s, with 1 job waiting for one" in result.stderr, \
        result.describe()
    assert not (project / "out.txt").exists()

