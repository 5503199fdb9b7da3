"""The local executor spawns a task started from the thread that waits at once, not at the
next `wait`: the scheduler starts the next job before it records the one that ended, and
that job's command must be running meanwhile, or a slot stands idle for every job."""

from __future__ import annotations

import os
import threading

import pytest

from rlmake.executors.base import Task
from rlmake.executors.local import LocalExecutor

pytestmark = pytest.mark.integration


def test_a_task_started_by_the_waiting_thread_is_running_when_start_returns(tmp_path):
    executor = LocalExecutor(2)
    try:
        assert executor.wait(0) is None             # this thread is the one that waits
        executor.start(Task("a", ("true",), os.getcwd()))
        assert executor.running_count() == 1
        assert executor.wait().exit_code == 0
    finally:
        executor.close()


def test_a_task_started_by_another_thread_waits_for_the_waiting_thread(tmp_path):
    executor = LocalExecutor(2)
    try:
        assert executor.wait(0) is None
        starter = threading.Thread(target=executor.start,
                                   args=(Task("b", ("true",), os.getcwd()),))
        starter.start()
        starter.join()
        assert executor.running_count() == 0         # spawned only by the waiting thread
        assert executor.wait().exit_code == 0
    finally:
        executor.close()
