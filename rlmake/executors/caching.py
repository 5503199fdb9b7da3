"""An executor that asks the artifact cache first.

Each task with a cache key is looked up before it runs: a hit restores the
outputs and completes the task without running anything, a miss hands the
task to the inner executor. A cache of local stores only is asked right away
(a lookup is a failed open()); one with a remote store is asked on worker
threads, so that lookups against the network run in parallel, and the
scheduler may then start more tasks than -j: this executor still lets at most
`runs` of them reach the inner executor at once.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from typing import TYPE_CHECKING

from rlmake.cache.artifacts import ArtifactCache
from rlmake.executors.base import Completion, Executor, Task
from rlmake.guard import hold_interrupts

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

_POLL_SECONDS = 0.02       # how long a remote hit may wait to be noticed


def _lookup_pool(lookups: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor   # 5 ms of imports a local cache never needs

    return ThreadPoolExecutor(max_workers=max(1, lookups), thread_name_prefix="rlmake-restore",
                              initializer=hold_interrupts)


class CachingExecutor:
    def __init__(self, inner: Executor, cache: ArtifactCache, lookups: int, runs: int):
        self._inner = inner
        self._cache = cache
        self._lookups = _lookup_pool(lookups) if cache.has_remote else None
        self._hits: collections.deque[Completion] = collections.deque()
        self._pending = 0                   # lookups under way on worker threads
        self._runs = max(1, runs)
        self._running = 0                   # tasks handed to the inner executor
        self._waiting: collections.deque[Task] = collections.deque()   # misses beyond `runs`
        self._lock = threading.Lock()
        self._cancelled = False
        self._missed: dict[str, tuple[float, float]] = {}   # task id -> when it was looked up

    def start(self, task: Task) -> None:
        if task.cache_key is None:
            self._run(task)
        elif self._lookups is None:
            self._look_up(task, task.cache_key)
        else:
            with self._lock:
                self._pending += 1
            self._lookups.submit(self._look_up, task, task.cache_key)

    def _look_up(self, task: Task, key: str) -> None:
        started = time.time()
        try:
            restored = self._cache.restore(key, task.outputs)
        except Exception as error:      # noqa: BLE001 - a cache problem must not fail the job
            self._cache.warn(f"cache lookup failed, running the job instead: {error}")
            restored = None
        with self._lock:
            if self._lookups is not None:
                self._pending -= 1
            if restored is not None:
                self._hits.append(Completion(task.id, 0, restored.output, started, time.time(),
                                             restored_from=restored.source,
                                             depfile_deps=restored.depfile_deps,
                                             stored_by=restored.stored_by))
                return
            if self._cancelled:
                self._hits.append(Completion(task.id, -signal.SIGTERM, b"", started, time.time(),
                                             error="interrupted"))
                return
            self._missed[task.id] = (started, time.time())
        self._run(task)

    def _run(self, task: Task) -> None:
        with self._lock:
            if self._running >= self._runs:
                self._waiting.append(task)
                return
            self._running += 1
        self._inner.start(task)

    def _inner_finished(self) -> None:
        with self._lock:
            self._running -= 1
            task = self._waiting.popleft() if self._waiting else None
            if task is not None:
                self._running += 1
        if task is not None:
            self._inner.start(task)

    def wait(self, timeout: float | None = None) -> Completion | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._hits:
                    return self._hits.popleft()
                polling = self._pending > 0
            stored = self._cache.store_one()    # idle: a queued local store, then look again
            step: float | None
            if stored:
                step = 0.0
            else:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                step = min(_POLL_SECONDS, remaining) if polling and remaining is not None \
                    else (_POLL_SECONDS if polling else remaining)
            completion = self._inner.wait(step)
            if completion is not None:
                self._inner_finished()
                with self._lock:
                    missed = self._missed.pop(completion.id, None)
                return completion if missed is None else completion._replace(looked_up=missed)
            if not stored and deadline is not None and time.monotonic() >= deadline:
                return None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            for task in waiting:
                self._hits.append(Completion(task.id, -signal.SIGTERM, b"", time.time(),
                                             time.time(), error="interrupted"))
        self._inner.cancel()

    def close(self) -> None:
        if self._lookups is not None:
            self._lookups.shutdown(wait=True)
        self._inner.close()
