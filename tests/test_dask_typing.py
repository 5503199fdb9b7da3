"""Found while typing the Dask executor: the check that asks each worker which cancelled
tasks still run imported a name distributed does not have, so it failed on every worker
and a cancel stopped waiting at once, before the workers had stopped their commands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rlmake.executors.dask import _executing

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.integration


def _held(release: str) -> str:
    deadline = time.monotonic() + 30
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done"


def test_workers_say_which_tasks_still_run(tmp_path):
    release = tmp_path / "release"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        future = client.submit(_held, str(release), key="rlmake-held", pure=False)
        deadline = time.monotonic() + 30
        running: dict[str, list[str]] = {}
        while not any(running.values()):
            assert time.monotonic() < deadline, "the held task never started"
            running = client.run(_executing, ["rlmake-held", "rlmake-other"])
        assert list(running.values()) == [["rlmake-held"]]
        release.write_text("")
        assert future.result(timeout=30) == "done"
        assert client.run(_executing, ["rlmake-held"]) == {
            address: [] for address in running}
