"""An executor that asks the artifact cache first.

Each task with a cache key is looked up on a worker thread (lookups against a
remote store run in parallel); a hit restores the outputs and completes the
task without running anything, a miss hands the task to the inner executor.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rlmake.cache.artifacts import ArtifactCache
from rlmake.executors.base import Completion, Executor, Task
from rlmake.executors.local import wait_on


class CachingExecutor:
    def __init__(self, inner: Executor, cache: ArtifactCache, workers: int):
        self._inner = inner
        self._cache = cache
        self._lookups = ThreadPoolExecutor(max_workers=max(1, workers),
                                           thread_name_prefix="rlmake-restore")
        self._finished: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._cancelled = False
        self._forwarder = threading.Thread(target=self._forward, name="rlmake-forward",
                                           daemon=True)
        self._forwarder.start()

    def start(self, task: Task) -> None:
        if task.cache_key is None:
            self._inner.start(task)
        else:
            self._lookups.submit(self._look_up, task)

    def _look_up(self, task: Task) -> None:
        started = time.time()
        try:
            restored = self._cache.restore(task.cache_key, task.outputs)
        except Exception as error:      # noqa: BLE001 - a cache problem must not fail the job
            self._cache.warn(f"cache lookup failed, running the job instead: {error}")
            restored = None
        if restored is not None:
            self._finished.put(Completion(task.id, 0, restored.output, started, time.time(),
                                          restored_from=restored.source,
                                          depfile_deps=restored.depfile_deps))
        elif self._cancelled:
            self._finished.put(Completion(task.id, -signal.SIGTERM, b"", started, time.time(),
                                          error="interrupted"))
        else:
            self._inner.start(task)

    def _forward(self) -> None:
        while not self._closed.is_set():
            completion = self._inner.wait(timeout=0.02)     # bounds how long close() waits
            if completion is not None:
                self._finished.put(completion)

    def wait(self, timeout: float | None = None) -> Completion | None:
        return wait_on(self._finished, timeout)

    def cancel(self) -> None:
        self._cancelled = True
        self._inner.cancel()

    def close(self) -> None:
        self._lookups.shutdown(wait=True)
        self._closed.set()
        self._forwarder.join()
        self._inner.close()
