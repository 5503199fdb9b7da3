"""An executor that asks the artifact cache first.

Each task with a cache key is looked up before it runs: a hit restores the
outputs and completes the task without running anything, a miss hands the
task to the inner executor. A cache of local stores only is asked right away
(a lookup is a failed open()); one with a remote store is asked on worker
threads, so that lookups against the network run in parallel.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rlmake.cache.artifacts import ArtifactCache
from rlmake.executors.base import Completion, Executor, Task

_POLL_SECONDS = 0.02       # how long a remote hit may wait to be noticed


class CachingExecutor:
    def __init__(self, inner: Executor, cache: ArtifactCache, workers: int):
        self._inner = inner
        self._cache = cache
        self._lookups = ThreadPoolExecutor(max_workers=max(1, workers),
                                           thread_name_prefix="rlmake-restore") \
            if cache.has_remote else None
        self._hits: collections.deque[Completion] = collections.deque()
        self._pending = 0                   # lookups under way on worker threads
        self._lock = threading.Lock()
        self._cancelled = False

    def start(self, task: Task) -> None:
        if task.cache_key is None:
            self._inner.start(task)
        elif self._lookups is None:
            self._look_up(task)
        else:
            with self._lock:
                self._pending += 1
            self._lookups.submit(self._look_up, task)

    def _look_up(self, task: Task) -> None:
        started = time.time()
        try:
            restored = self._cache.restore(task.cache_key, task.outputs)
        except Exception as error:      # noqa: BLE001 - a cache problem must not fail the job
            self._cache.warn(f"cache lookup failed, running the job instead: {error}")
            restored = None
        with self._lock:
            if self._lookups is not None:
                self._pending -= 1
            if restored is not None:
                self._hits.append(Completion(task.id, 0, restored.output, started, time.time(),
                                             restored_from=restored.source,
                                             depfile_deps=restored.depfile_deps))
                return
            if self._cancelled:
                self._hits.append(Completion(task.id, -signal.SIGTERM, b"", started, time.time(),
                                             error="interrupted"))
                return
        self._inner.start(task)

    def wait(self, timeout: float | None = None) -> Completion | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._hits:
                    return self._hits.popleft()
                polling = self._pending > 0
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = min(_POLL_SECONDS, remaining) if polling and remaining is not None \
                else (_POLL_SECONDS if polling else remaining)
            completion = self._inner.wait(step)
            if completion is not None:
                return completion
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self._inner.cancel()

    def close(self) -> None:
        if self._lookups is not None:
            self._lookups.shutdown(wait=True)
        self._inner.close()
