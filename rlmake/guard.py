"""Where errors and signals become exit statuses: around every click command, and
around the plain `rlmake build` that the entry point runs without click."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from rlmake.errors import INTERRUPT_SIGNALS, Interrupted, RlmakeError


class Signalled(KeyboardInterrupt):
    """Ctrl-C as rlmake's own handler raises it. A subclass, because CPython flags a bare
    KeyboardInterrupt that passes through source run by exec() (dataclasses and
    namedtuples make their methods so) as unhandled, and then ends the process by
    SIGINT however the program handled it: exit -2, not 130."""


def signals_as_ctrl_c() -> dict:
    """SIGTERM and SIGHUP (the terminal or ssh connection closed) stop rlmake the way
    Ctrl-C does: commands stopped, their changed outputs removed, nothing half recorded,
    exit 130. A second one while the first is handled kills the commands at once (see
    LocalExecutor.cancel). A signal ignored when rlmake started stays ignored, as make
    does: `nohup rlmake build` must survive the hangup. Returns the handlers it replaced."""
    def interrupt(signum, frame):
        raise Signalled
    previous = {}
    for signum in INTERRUPT_SIGNALS:
        try:
            handler = signal.signal(signum, interrupt)
        except ValueError:          # not the main thread (a test runner): leave signals alone
            break
        if handler is signal.SIG_IGN:
            signal.signal(signum, signal.SIG_IGN)
        if handler is not None:
            previous[signum] = handler
    return previous


def hold_interrupts() -> None:
    """Block SIGINT, SIGTERM and SIGHUP in the calling thread, which must be one of
    rlmake's helper threads (a pool's initializer). The kernel then hands an interrupt to
    the main thread, which holds it while it starts a command: one a helper thread took
    would run Python's handler on the main thread at once, whatever the main thread's
    mask, and could leave a command started but not yet known to cancel or record."""
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)


def exit_status(command: Callable[[], object]) -> int:
    """Run `command` with SIGTERM and SIGHUP taken as Ctrl-C; 0 when it returns, else the
    exit status of what stopped it, said on stderr (an RlmakeError, or an interrupt)."""
    previous = signals_as_ctrl_c()
    try:
        command()
        return 0
    except RlmakeError as error:
        say(f"rlmake: error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        say("rlmake: interrupted")
        return Interrupted.exit_code
    except BrokenPipeError:
        # whoever read the output went away (`rlmake build | head -1`): stop quietly with
        # status 1, as click does, and keep Python from failing again on its last flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        if not _caused_by_interrupt(error):
            raise
        say("rlmake: interrupted")
        return Interrupted.exit_code
    finally:
        _put_back(previous)


def _put_back(handlers: dict) -> None:
    """Put the handlers rlmake replaced back. An interrupt that lands meanwhile, on one of
    rlmake's own still in place, comes too late to stop anything: it must not escape
    with a traceback, nor leave a handler of rlmake's behind; the rest are put back all
    the same, and the exit status is what the command's was."""
    while True:
        try:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            return
        except KeyboardInterrupt:
            continue


def _caused_by_interrupt(error: BaseException) -> bool:
    """Whether an interrupt is what `error` wraps. Python 3.11 turns an exception raised
    while a class is made into a RuntimeError caused by it: a Ctrl-C that lands in a
    `__set_name__` while rlmake imports a module comes out so."""
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause = cause.__cause__
    return False


def say(text: str) -> None:
    """A line on stderr, at once."""
    print(text, file=sys.stderr, flush=True)
