"""An interrupt (SIGINT, SIGTERM, SIGHUP) that lands while the local executor spawns a
command is held until the command is known: running, watched, and listed in the record of
running commands. Raised a moment earlier it would leave a command that nothing stops."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from rlmake.executors import leftovers
from rlmake.executors.base import Task
from rlmake.executors.leftovers import CommandRecord
from rlmake.executors.local import LocalExecutor

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(sys.platform != "linux", reason="the record needs /proc")]


class Interrupted(KeyboardInterrupt):
    """As rlmake's own handler raises for all three (rlmake.guard)."""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["INT", "TERM", "HUP"])
def test_an_interrupt_during_a_spawn_waits_until_the_command_is_known(tmp_path, monkeypatch,
                                                                     signum):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    spawned: list[int] = []
    real_spawn = os.posix_spawn

    def spawn_then_interrupted(*args, **kwargs):
        pid = real_spawn(*args, **kwargs)
        spawned.append(pid)
        # lands between the spawn and its bookkeeping; sent to this thread, as the kernel
        # sends Ctrl-C when no other thread could take it (a test runner has others)
        signal.pthread_kill(threading.get_ident(), signum)
        return pid

    def interrupt(number, frame):
        raise Interrupted(number)

    (tmp_path / ".rlmake").mkdir()
    record = CommandRecord(str(tmp_path / ".rlmake"))
    executor = LocalExecutor(1, record)
    previous = signal.signal(signum, interrupt)
    try:
        assert executor.wait(0) is None
        monkeypatch.setattr(os, "posix_spawn", spawn_then_interrupted)
        with pytest.raises(Interrupted):
            executor.start(Task("t", ("sleep 30",), os.getcwd()))
        monkeypatch.undo()
        assert len(spawned) == 1, "the command was not started by posix_spawn"
        assert executor.running_count() == 1, "the interrupt lost the command"
        record.flush()
        assert list(leftovers.read_log(record.path).running) == spawned
        executor.cancel()               # and the cancel reaches it
        done = executor.wait()
        assert done is not None and done.exit_code == -signal.SIGTERM
        assert executor.running_count() == 0
    finally:
        signal.signal(signum, previous)
        for pid in spawned:
            try:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        executor.close()


def test_an_interrupt_pending_as_the_spawn_blocks_leaves_no_signal_blocked(tmp_path,
                                                                          monkeypatch):
    """Python runs a pending signal's handler inside the very call that blocks it: the
    interrupt is raised with the signals already blocked, before the spawn. They must not
    stay blocked (the rest of the build would never hear another Ctrl-C), and nothing is
    started."""
    from rlmake.executors import local

    real_sigmask = local._sigmask

    def pending_when_blocked(how, signals):
        previous = real_sigmask(how, signals)
        if how == signal.SIG_BLOCK:
            raise Interrupted
        return previous

    monkeypatch.setattr(local, "_sigmask", pending_when_blocked)
    monkeypatch.setattr(os, "posix_spawn", lambda *args, **kwargs: pytest.fail("spawned"))
    opened = len(os.listdir("/proc/self/fd"))
    executor = LocalExecutor(1)
    try:
        with pytest.raises(Interrupted):
            executor.start(Task("t", ("true",), os.getcwd()))
            executor.wait(1)
    finally:
        monkeypatch.setattr(local, "_sigmask", real_sigmask)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        executor.close()
    assert not blocked & {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    assert len(os.listdir("/proc/self/fd")) == opened     # the output pipe was closed too
