"""Runs each job's commands with `/bin/sh -c` on this machine, from a pool of threads."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from rlmake.executors.base import Completion, Task

_KILL_GRACE_SECONDS = 2.0


class LocalExecutor:
    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rlmake-job")
        self._finished: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._processes: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._cancelled = False
        self._base_env = dict(os.environ)

    def start(self, task: Task) -> None:
        self._pool.submit(self._run, task)

    def wait(self, timeout: float | None = None) -> Completion | None:
        return wait_on(self._finished, timeout)

    def cancel(self) -> None:
        self._cancelled = True
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + _KILL_GRACE_SECONDS
        while time.monotonic() < deadline and self._running_processes():
            time.sleep(0.05)
        self._signal_all(signal.SIGKILL)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, task: Task) -> None:
        self._finished.put(run_task(task, self._base_env, self._track, lambda: self._cancelled))

    def _track(self, process: subprocess.Popen, running: bool) -> None:
        with self._lock:
            if running:
                self._processes[process.pid] = process
            else:
                del self._processes[process.pid]

    def _running_processes(self) -> list[subprocess.Popen]:
        with self._lock:
            return [p for p in self._processes.values() if p.poll() is None]

    def _signal_all(self, signum: int) -> None:
        for process in self._running_processes():
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                pass


def run_task(task: Task, base_env: dict[str, str] | None = None,
             track: Callable[[subprocess.Popen, bool], None] | None = None,
             cancelled: Callable[[], bool] = lambda: False) -> Completion:
    """Run a task's commands in order with `/bin/sh -c`, stopping at the first failure.

    A plain function, so that any executor can run it, here or on another machine.
    `track(process, running)` hears of each child, so that it can be stopped."""
    started = time.time()
    try:
        for directory in task.make_dirs:
            os.makedirs(directory, exist_ok=True)
        base = os.environ if base_env is None else base_env
        env = {**base, **task.env} if task.env else base
        output = bytearray()
        for command in task.commands:
            if cancelled():
                return Completion(task.id, -signal.SIGTERM, bytes(output), started, time.time(),
                                  command)
            process = subprocess.Popen(["/bin/sh", "-c", command], cwd=task.cwd, env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            if track:
                track(process, True)
            try:
                output += process.communicate()[0]
            finally:
                if track:
                    track(process, False)
            if process.returncode != 0:
                return Completion(task.id, process.returncode, bytes(output), started,
                                  time.time(), command)
        return Completion(task.id, 0, bytes(output), started, time.time())
    except Exception as error:      # noqa: BLE001 - the build must hear of any failure
        return Completion(task.id, 127, b"", started, time.time(), error=str(error))


def wait_on(finished: queue.SimpleQueue, timeout: float | None) -> Completion | None:
    """The next completion; short waits in a loop keep the main thread responsive to Ctrl-C."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        try:
            return finished.get(timeout=step)
        except queue.Empty:
            if deadline is not None and time.monotonic() >= deadline:
                return None
