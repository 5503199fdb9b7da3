"""Runs each job's commands with `/bin/sh -c` on this machine, from a pool of threads."""

from __future__ import annotations

import functools
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping

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


# As GNU make does: a command with none of these characters, whose first word is not
# a shell builtin or keyword, means the same exec'd directly as under /bin/sh -c,
# and spares a shell per job.
_SHELL_CHARACTERS = frozenset("#;\"'*?[]&|<>(){}$`\\~!^%\n=")
_SHELL_WORDS = frozenset(
    ". : [ [[ alias bg break case cd command continue declare do done echo elif else esac "
    "eval exec exit export false fc fg fi for function getopts hash if in jobs kill let "
    "local login logout printf pwd read readonly return select set shift source test then "
    "time times trap true type typeset ulimit umask unalias unset until wait while { }".split())


def argv_for(command: str, env: Mapping[str, str]) -> list[str]:
    """How to run `command`: directly when no shell could make a difference, else sh -c."""
    if _SHELL_CHARACTERS.isdisjoint(command):
        words = command.split()
        if words and words[0] not in _SHELL_WORDS:
            program = _which(words[0], env.get("PATH", os.defpath))
            if program is not None:
                return [program, *words[1:]]
    return ["/bin/sh", "-c", command]


@functools.lru_cache(maxsize=1024)
def _which(program: str, path: str) -> str | None:
    return shutil.which(program, path=path)


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
            process = subprocess.Popen(argv_for(command, env), cwd=task.cwd, env=env,
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
