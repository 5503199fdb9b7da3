"""A Ctrl-C that lands while rlmake is still making its classes (importing a module)
ends the build as any other interrupt does: "rlmake: interrupted", status 130, no
traceback. Python 3.11 wraps an exception raised in a `__set_name__` in a
RuntimeError; the fault-injection test once sent its SIGINT there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlmake.guard import exit_status

# A class whose making takes the SIGINT, as a module import would: rlmake's handler
# raises inside __set_name__, and Python hands on a RuntimeError caused by it.
_INTERRUPTED_WHILE_MAKING_A_CLASS = """
import os, signal, sys
from rlmake.guard import exit_status

class Named:
    def __set_name__(self, owner, name):
        os.kill(os.getpid(), signal.SIGINT)

def import_a_module():
    class Project:
        rulesfile = Named()
    print("the interrupt was lost", flush=True)

sys.exit(exit_status(import_a_module))
"""


@pytest.mark.integration
def test_an_interrupt_while_a_class_is_made_exits_130_without_a_traceback():
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_MAKING_A_CLASS],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "rlmake: interrupted"
    assert "lost" not in done.stdout


def test_a_runtime_error_that_no_interrupt_caused_still_surfaces():
    def fails():
        try:
            raise ValueError("a bug of rlmake's own")
        except ValueError as error:
            raise RuntimeError("wrapped") from error

    with pytest.raises(RuntimeError, match="wrapped"):
        exit_status(fails)


def test_an_interrupt_as_the_handlers_are_put_back_is_too_late_to_matter(monkeypatch):
    """The build is over when exit_status puts the handlers it replaced back; a signal
    that lands on one of rlmake's own meanwhile (the fault-injection test once sent its
    SIGHUP there: click said "Aborted!", status 1) leaves the status as it was, and every
    handler as it was before."""
    import signal

    from rlmake import guard
    from rlmake.errors import INTERRUPT_SIGNALS

    before = {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS}
    real_signal = signal.signal
    putting_back = []

    def lands_while_put_back(signum, handler):
        previous = real_signal(signum, handler)
        if handler is before[signum] and not putting_back:
            putting_back.append(signum)
            raise guard.Signalled          # rlmake's handler, still in place for the rest
        return previous

    monkeypatch.setattr(signal, "signal", lands_while_put_back)
    try:
        status = exit_status(lambda: None)
    except KeyboardInterrupt:
        status = None                       # escaped: click would say "Aborted!"
    finally:
        monkeypatch.setattr(signal, "signal", real_signal)
    assert status == 0
    assert putting_back
    assert {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS} == before


# The entry point as the console script calls it, with a Ctrl-C landing while it imports
# the module named (click for any command but a plain build, which needs less; the guard
# itself, before rlmake's handlers are in place).
_INTERRUPTED_WHILE_IMPORTING = """
import os, signal, sys

MODULE = sys.argv.pop()

class SendsCtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, SendsCtrlC())
from rlmake.__main__ import main
main()
"""


@pytest.mark.integration
@pytest.mark.parametrize("argv, module", [(["--version"], "click"),
                                          (["build"], "rlmake.build_command"),
                                          (["build"], "rlmake.guard")])
def test_an_interrupt_while_the_entry_point_imports_exits_130(tmp_path, argv, module):
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_IMPORTING, *argv, module],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "rlmake: interrupted"
    assert "version" not in done.stdout
