"""Where job commands run. Every executor implements executors.base.Executor."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from rlmake.errors import UsageError

EXECUTORS = ("local", "dask")
# The protocols a Dask client connects over (distributed.comm); `HOST:PORT` alone means tcp.
SCHEDULER_PROTOCOLS = ("tcp", "tls", "ucx", "ws", "wss")


@dataclass(frozen=True)
class ExecutorSettings:
    """Where commands run, checked when made: a bad address stops the build before it
    locks, plans or connects to anything."""

    kind: str = "local"
    scheduler: str | None = None        # dask: tcp://HOST:8786; none starts a LocalCluster
    file_mode: str = "auto"             # dask: auto, shared or staged

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise UsageError(f"unknown executor '{self.kind}': use one of {', '.join(EXECUTORS)}")
        if self.kind == "dask" and self.scheduler is not None:
            check_scheduler_address(self.scheduler)


def check_scheduler_address(address: str) -> None:
    """Refuse what cannot be a Dask scheduler's address (without importing distributed)."""
    from urllib.parse import urlsplit

    address = str(address)                  # rlmake.toml may give a number
    scheme, _, rest = address.partition("://") if "://" in address else ("tcp", "", address)
    problem = None
    if scheme.lower() not in SCHEDULER_PROTOCOLS:
        problem = (f"'{scheme}://' is not a protocol Dask schedulers listen on"
                   + (" (that is the dashboard's)" if scheme.lower() in ("http", "https") else ""))
    else:
        try:
            parts = urlsplit(f"tcp://{rest}")
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or not parts.hostname or port is None or port == 0 \
                or parts.path or parts.query or parts.fragment or parts.username:
            problem = "it needs a host and a port"
    if problem:
        raise UsageError(f"bad Dask scheduler address '{address}': {problem}; use "
                         "tcp://HOST:PORT (or tls://, ucx://, ws://, wss://), e.g. "
                         "tcp://scheduler.example.org:8786")


def make_executor(settings: ExecutorSettings, project_dir: str, jobs: int,
                  shared_store_url: str | None, endpoint_url: str | None,
                  shared_store_writable: bool = False):
    if settings.kind == "local":
        from rlmake.executors.leftovers import CommandRecord
        from rlmake.executors.local import LocalExecutor

        return LocalExecutor(jobs, CommandRecord(os.path.join(project_dir, ".rlmake")))
    if settings.kind == "dask":
        from rlmake.executors.dask import DaskExecutor, StoreSpec

        url = shared_store_url
        if url and "://" not in url:        # rlmake.toml's is relative to the project
            url = os.path.join(project_dir, url)
        store = StoreSpec(url, endpoint_url) if url else None
        return DaskExecutor(project_dir, settings.scheduler, settings.file_mode, store,
                            say=lambda text: print(text, file=sys.stderr, flush=True),
                            store_writable=shared_store_writable)
    raise UsageError(f"unknown executor '{settings.kind}': use one of {', '.join(EXECUTORS)}")
