"""Ctrl-C with `--executor dask` stops the commands on the workers, not just the futures.

Dask cannot interrupt a task that is running; it only marks it cancelled. The
worker-side wrapper notices and stops the command's process group (SIGTERM,
grace, SIGKILL), and the client waits for that before it lets go of the
cluster. Checked against a real scheduler and workers on 127.0.0.1 (the
helpers of test_dask_executor) and against a LocalCluster, which dies with
rlmake; and with rlmake SIGKILLed, when the scheduler drops its tasks.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from buildkit import finish, kill_group, pid_alive, wait_until_dead
from test_dask_executor import start_rlmake

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(dask_cluster):
    """The cluster shared with the other Dask tests (conftest.py)."""
    return dask_cluster

HELD = """
rules:
  held.txt:
    command: >-
      echo $$ > held.pid; echo partial > held.txt;
      i=0; while [ ! -e release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done;
      echo full > held.txt
"""


def held_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "Rulesfile.yaml").write_text(HELD.lstrip())
    (root / "rlmake.toml").write_text("[cache]\nlocal = false\n")
    return root


def command_pid(project: Path, build, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout       # a LocalCluster takes a while to start
    while not (project / "held.pid").is_file() or not (project / "held.pid").read_text().strip():
        assert build.poll() is None, finish(build).describe()
        assert time.monotonic() < deadline, "the held command never started"
        time.sleep(0.05)
    return int((project / "held.pid").read_text())


@pytest.mark.parametrize("where", ["scheduler", "local-cluster"])
def test_ctrl_c_stops_the_command_on_the_worker(cluster, tmp_path, where):
    project = held_project(tmp_path / "proj")
    target = ["--scheduler", cluster.address] if where == "scheduler" else []
    build = start_rlmake(project, "build", "--executor", "dask", *target)
    try:
        command = command_pid(project, build)
        build.send_signal(signal.SIGINT)
        result = finish(build, timeout=60)
    finally:
        kill_group(build)
    try:
        assert result.returncode == 130, result.describe()
        assert wait_until_dead(command, 5.0), "the command outlived the cancelled build"
        assert not (project / "held.txt").exists(), result.describe()
    finally:
        (project / "release").write_text("")


def test_rlmake_killed_the_scheduler_drops_its_tasks_and_the_command_stops(cluster, tmp_path):
    project = held_project(tmp_path / "proj")
    build = start_rlmake(project, "build", "--executor", "dask", "--scheduler", cluster.address)
    try:
        command = command_pid(project, build)
        build.send_signal(signal.SIGKILL)
        build.communicate(timeout=10)
        assert wait_until_dead(command, 10.0), "the command outlived its SIGKILLed client"
    finally:
        kill_group(build)
        (project / "release").write_text("")
    assert not pid_alive(command)
