"""Where job commands run. Every executor implements executors.base.Executor."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from rlmake.errors import UsageError

EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"
    scheduler: str | None = None        # dask: tcp://HOST:8786; none starts a LocalCluster
    file_mode: str = "auto"             # dask: auto, shared or staged


def make_executor(settings: ExecutorSettings, project_dir: str, jobs: int,
                  shared_store_url: str | None, endpoint_url: str | None):
    if settings.kind == "local":
        from rlmake.executors.leftovers import CommandRecord
        from rlmake.executors.local import LocalExecutor

        return LocalExecutor(jobs, CommandRecord(os.path.join(project_dir, ".rlmake")))
    if settings.kind == "dask":
        from rlmake.executors.dask import DaskExecutor, StoreSpec

        store = StoreSpec(shared_store_url, endpoint_url) if shared_store_url else None
        return DaskExecutor(project_dir, settings.scheduler, settings.file_mode, store,
                            say=lambda text: print(text, file=sys.stderr, flush=True))
    raise UsageError(f"unknown executor '{settings.kind}': use one of {', '.join(EXECUTORS)}")
