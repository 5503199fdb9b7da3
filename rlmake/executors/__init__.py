"""Where job commands run. Every executor implements executors.base.Executor."""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, NamedTuple

from rlmake.errors import UsageError

if TYPE_CHECKING:       # a Protocol costs a millisecond to make, and a no-op runs nothing
    from rlmake.executors.base import Executor

EXECUTORS = ("local", "dask")
FILE_MODES = ("auto", "shared", "staged")      # how files reach Dask workers
# How long a Dask build waits for a first worker before it gives up (RLMAKE_DASK_WORKER_WAIT
# overrides it, for clusters whose workers come from a batch queue).
WORKER_WAIT_SECONDS = 10.0
# The protocols a Dask client connects over (distributed.comm); `HOST:PORT` alone means tcp.
SCHEDULER_PROTOCOLS = ("tcp", "tls", "ucx", "ws", "wss")


class ExecutorSettings(NamedTuple):
    """Where commands run; made by `checked`, so that a bad address stops the build
    before it locks, plans or connects to anything."""

    kind: str = "local"
    scheduler: str | None = None        # dask: tcp://HOST:8786; none starts a LocalCluster
    file_mode: str = "auto"             # dask: auto, shared or staged
    worker_wait: float = WORKER_WAIT_SECONDS    # dask: seconds to wait for a first worker
    cluster_logs: bool = False          # dask: let distributed's own log lines through (-v)

    @classmethod
    def checked(cls, *args, **kwargs) -> "ExecutorSettings":
        """These settings, or the UsageError that says what is wrong with them."""
        settings = cls(*args, **kwargs)
        settings.check()
        return settings

    def check(self) -> None:
        if self.kind not in EXECUTORS:
            raise UsageError(f"unknown executor '{self.kind}': use one of {', '.join(EXECUTORS)}")
        if self.kind != "dask":
            return
        if self.scheduler is not None:
            check_scheduler_address(self.scheduler)
        if self.file_mode not in FILE_MODES:
            raise UsageError(f"unknown file mode '{self.file_mode}': use one of "
                             f"{', '.join(FILE_MODES)}")


def worker_wait_from(text: str | None) -> float:
    """RLMAKE_DASK_WORKER_WAIT as seconds (unset: the default)."""
    if text is None:
        return WORKER_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"RLMAKE_DASK_WORKER_WAIT='{text}': give a number of seconds, "
                         f"e.g. 60 (default {WORKER_WAIT_SECONDS:g})")
    return seconds


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


def make_executor(settings: ExecutorSettings, project_dir: str, jobs: int | None,
                  shared_store_url: str | None, endpoint_url: str | None,
                  shared_store_writable: bool = False) -> tuple[Executor, int]:
    """The executor, and how many jobs it runs at once: -j when not given (`jobs` None).
    Here, the CPUs; on Dask, the threads of the workers connected when it started."""
    if settings.kind == "local":
        from rlmake.executors.leftovers import CommandRecord
        from rlmake.executors.local import LocalExecutor

        workers = jobs or os.cpu_count() or 1
        return LocalExecutor(workers, CommandRecord(os.path.join(project_dir, ".rlmake"))), \
            workers
    if settings.kind == "dask":
        from rlmake.executors.dask import DaskExecutor, StoreSpec

        url = shared_store_url
        if url and "://" not in url:        # rlmake.toml's is relative to the project
            url = os.path.join(project_dir, url)
        store = StoreSpec(url, endpoint_url) if url else None
        dask = DaskExecutor(project_dir, settings.scheduler, settings.file_mode, store,
                            say=lambda text: print(text, file=sys.stderr, flush=True),
                            store_writable=shared_store_writable,
                            worker_wait=settings.worker_wait,
                            cluster_logs=settings.cluster_logs)
        return dask, max(1, dask.total_threads)
    raise UsageError(f"unknown executor '{settings.kind}': use one of {', '.join(EXECUTORS)}")
