"""Runs each job's commands on this machine: directly when simple, else with `/bin/sh -c`.

Children are started with posix_spawn (vfork and exec, nothing else in
Python between them) when they run in rlmake's own directory, which posix_spawn
cannot change in Python 3.11; elsewhere with subprocess. Either way each gets
stdin from /dev/null, stdout and stderr into one pipe, a session of its own
(so that a cancel reaches the commands it starts), and SIGPIPE and SIGXFSZ
back at their defaults, which Python ignores.
"""

from __future__ import annotations

import collections
import _signal
import contextlib
import functools
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Protocol

from rlmake.errors import INTERRUPT_SIGNALS
from rlmake.executors.base import Completion, Task
from rlmake.executors import leftovers
from rlmake.executors.leftovers import CommandRecord

if TYPE_CHECKING:
    import queue
    import subprocess

    from rlmake.executors.tether import Tether

_KILL_GRACE_SECONDS = 2.0
_REAP_SECONDS = 2.0             # for SIGKILLed children to be gone
_READ_SIZE = 65536


class LocalExecutor:
    """Runs tasks as child processes from one thread: the one that calls `wait`.

    No worker threads: children are spawned, read (through poll) and reaped by the
    waiting thread, so nothing contends for the GIL between one job's end and the
    next one's start. `start` may be called from any thread; called from the waiting
    thread it spawns at once, so that the next command runs while the build records
    the one that just ended (queued to the next `wait`, a slot stood idle meanwhile).

    `record`, when given, lists the running commands in the project's `.rlmake/`, so
    that a build after an rlmake that died without stopping them can stop them."""

    def __init__(self, workers: int, record: CommandRecord | None = None):
        self._base_env = dict(os.environ)
        self._spawn_here = os.getcwd() if _no_inherited_descriptors() else None
        self._poll = select.poll()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._poll.register(self._wake_read, select.POLLIN)
        self._queued: collections.deque[Task] = collections.deque()
        self._finished: collections.deque[Completion] = collections.deque()
        self._running: dict[int, _Child] = {}       # pipe fd -> child
        self._lock = threading.Lock()
        self._waiter: int | None = None            # the thread that calls `wait`
        self._cancelled = False
        self._made_dirs: set[str] = set()
        self._record = record
        if record is not None:      # so that a command can be found even before it is listed
            self._base_env[leftovers.TOKEN_VARIABLE] = record.token

    def start(self, task: Task) -> None:
        with self._lock:
            self._queued.append(task)
        if threading.get_ident() == self._waiter:
            self._spawn_queued()
        else:
            os.write(self._wake_write, b"x")

    def wait(self, timeout: float | None = None) -> Completion | None:
        self._waiter = threading.get_ident()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._spawn_queued()
            if self._record is not None:
                self._record.flush()        # the ends of this turn, in one write
            if self._finished:
                return self._finished.popleft()
            # short polls keep the main thread responsive to Ctrl-C
            step = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            for fd, events in self._poll.poll(step * 1000):
                if fd == self._wake_read:
                    _drain(self._wake_read)
                elif events == select.POLLHUP:
                    # no writer is left and nothing is left to read (that would be
                    # POLLIN too): a read would only say end of file
                    self._ended(fd, self._running[fd])
                else:
                    self._read(fd, self._running[fd])
            if deadline is not None and time.monotonic() >= deadline and not self._finished:
                return None

    def running_count(self) -> int:
        """How many commands are running now."""
        return len(self._running)

    def cancel(self) -> None:
        """SIGTERM to every command's group, up to a grace period for them to exit, then
        SIGKILL; a second interrupt during the grace period cuts it short."""
        self._cancelled = True
        with self._lock:
            queued, self._queued = list(self._queued), collections.deque()
        for task in queued:
            self._finished.append(Completion(task.id, -signal.SIGTERM, b"", time.time(),
                                             time.time(), error="interrupted"))
        with _interrupts_held() as interrupted_again:
            self._signal_all(signal.SIGTERM)
            deadline = time.monotonic() + _KILL_GRACE_SECONDS
            while time.monotonic() < deadline and any(c.process.poll() is None
                                                      for c in self._running.values()):
                if interrupted_again(0.05):
                    break
            self._signal_all(signal.SIGKILL)
            self._reap_killed()
            interrupted_again(0)        # one that came meanwhile is answered: all is stopped

    def close(self) -> None:
        os.close(self._wake_read)
        os.close(self._wake_write)
        if self._record is not None:
            self._record.close()

    # --- children -------------------------------------------------------------------------

    def _spawn_queued(self) -> None:
        # Looked at without the lock, as every turn does: a task another thread adds
        # meanwhile also wakes the poll, and is taken at the next turn.
        while self._queued:
            with self._lock:
                if not self._queued:
                    return
                task = self._queued.popleft()
            try:
                for directory in task.make_dirs:
                    if directory not in self._made_dirs:    # a mkdir per job adds up
                        os.makedirs(directory, exist_ok=True)
                        self._made_dirs.add(directory)
                env = {**self._base_env, **task.env} if task.env else self._base_env
                self._spawn(_Child(task, env, time.time()))
            except Exception as error:      # noqa: BLE001 - the build must hear of any failure
                self._finished.append(Completion(task.id, 127, b"", time.time(), time.time(),
                                                 error=str(error)))

    def _spawn(self, child: _Child) -> None:
        argv = argv_for(child.task.commands[child.index], child.env)
        read_end, write_end = os.pipe()
        since = self._record.clock(child.task.id) if self._record is not None else -1
        here = child.task.cwd == self._spawn_here
        # Not around Popen: its child would inherit the mask (posix_spawn's is cleared).
        held = _hold_interrupts(read_end, write_end) if here else None
        try:
            try:
                if here:
                    child.process = _Spawned(argv, child.env, write_end)
                else:
                    child.process = _popen(argv, child.task.cwd, child.env, write_end)
            except BaseException:
                os.close(read_end)
                raise
            finally:
                os.close(write_end)
            self._running[read_end] = child
            self._poll.register(read_end, select.POLLIN)
            if self._record is not None:
                self._record.started(child.process.pid, since)
        finally:
            if held is not None:
                _sigmask(signal.SIG_SETMASK, held)

    def _read(self, fd: int, child: _Child) -> None:
        data = os.read(fd, _READ_SIZE)
        if data:
            child.output += data
        else:
            self._ended(fd, child)

    def _ended(self, fd: int, child: _Child) -> None:
        """The command's output has ended: reap it, then run the task's next command or
        say how the task ended."""
        self._poll.unregister(fd)
        os.close(fd)
        del self._running[fd]
        status = child.process.wait()
        if self._record is not None and not self._cancelled:   # a cancelled one stays
            self._record.ended(child.process.pid)               # unfinished (leftovers)
        task = child.task
        if status == 0 and child.index + 1 < len(task.commands) and not self._cancelled:
            child.index += 1
            try:
                self._spawn(child)
            except Exception as error:      # noqa: BLE001 - the build must hear of any failure
                self._finished.append(Completion(task.id, 127, bytes(child.output),
                                                 child.started, time.time(),
                                                 task.commands[child.index], str(error)))
            return
        failed = task.commands[child.index] if status != 0 else None
        if status == 0 and self._cancelled and child.index + 1 < len(task.commands):
            status, failed = -signal.SIGTERM, task.commands[child.index + 1]
        self._finished.append(Completion(task.id, status, bytes(child.output), child.started,
                                         time.time(), failed))

    def _signal_all(self, signum: int) -> None:
        for child in list(self._running.values()):
            try:
                os.killpg(child.process.pid, signum)
            except ProcessLookupError:
                pass

    def _reap_killed(self) -> None:
        """Wait (briefly) for SIGKILLed children to be gone, so that none writes an output
        after the build has removed it."""
        deadline = time.monotonic() + _REAP_SECONDS
        for child in self._running.values():
            while child.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)


# signal.pthread_sigmask turns its answer into a set of Signals members, which costs a
# spawn three times what the system call does; the C function answers plain numbers.
_sigmask: Callable[[int, Iterable[int]], set[int]] = _signal.pthread_sigmask


def _hold_interrupts(read_end: int, write_end: int) -> set[int]:
    """Hold SIGINT, SIGTERM and SIGHUP on this thread while a command starts, until it is
    known (to cancel and to the record), so that an interrupt cannot start a command that
    nothing would stop: the one that came meanwhile is delivered when the mask returned
    here is put back. (Only if no other thread can take it: rlmake's helper threads hold
    them too, guard.hold_interrupts.) Not a context manager: a generator per job cost
    more than the two system calls.

    One already pending is raised by its handler from within the blocking call: then
    nothing is started, the command's output pipe is closed and nothing is held."""
    try:
        return _sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        _sigmask(signal.SIG_UNBLOCK, INTERRUPT_SIGNALS)
        raise


@contextlib.contextmanager
def _interrupts_held():
    """Hold SIGINT, SIGTERM and SIGHUP while a cancel is under way, so that a second one
    cannot cut the cancel short before every command is killed; yields `interrupted(t)`:
    whether one came, waiting up to t seconds for it. Off the main thread, where signal
    handlers cannot be set, it only waits."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield lambda seconds: time.sleep(seconds) or False
        return
    came: list[int] = []
    # a handler as well as the mask: another thread that does not block them may take one
    previous = {signum: signal.signal(signum, lambda number, frame: came.append(number))
                for signum in INTERRUPT_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)

    def interrupted(seconds: float) -> bool:
        if not came and signal.sigtimedwait(INTERRUPT_SIGNALS, seconds) is not None:
            came.append(0)
        return bool(came)
    try:
        yield interrupted
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in previous.items():
            if handler is not None:         # None: set outside Python, nothing to restore
                signal.signal(signum, handler)


_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class _Process(Protocol):
    """What is used of a started command: a Popen or a _Spawned."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class _Spawned:
    """A child started by posix_spawn, with the part of Popen's interface used here."""

    def __init__(self, argv: list[str], env: Mapping[str, str], output: int):
        self.pid = os.posix_spawn(argv[0], argv, env, setsid=True, setsigdef=_RESET_SIGNALS,
                                  setsigmask=(),
                                  file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull,
                                                 os.O_RDONLY, 0),
                                                (os.POSIX_SPAWN_DUP2, output, 1),
                                                (os.POSIX_SPAWN_DUP2, output, 2)])
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _popen(argv: list[str], cwd: str, env: Mapping[str, str], output: int) -> "subprocess.Popen":
    import subprocess

    return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
                            stderr=output, start_new_session=True)


def _no_inherited_descriptors() -> bool:
    """Make every descriptor rlmake inherited close on exec, as Popen's close_fds would in
    each child (a job must not hold, say, a CI runner's pipe open). False if they cannot
    be listed: then every child is started through Popen."""
    try:
        names = os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd")
    except OSError:
        return False
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass                    # the listing's own descriptor, closed by now
    return True


class _Child:
    """One task's progress through its commands."""

    def __init__(self, task: Task, env: Mapping[str, str], started: float):
        self.task = task
        self.env = env
        self.started = started
        self.index = 0
        self.output = bytearray()
        # Its current command's process, set before the child is watched (a plain
        # attribute: a property cost four calls a job).
        self.process: _Process


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
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
    """The executable `program` names on `path`, or None (then the shell is asked).

    Not shutil.which: importing shutil costs a one-job rebuild 2 ms."""
    if os.sep in program:
        return None             # a path from the job's directory: the shell knows best
    for directory in path.split(os.pathsep):
        if not directory:
            return None         # the job's directory is searched here: likewise
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def run_task(task: Task, base_env: dict[str, str] | None = None,
             track: Callable[[subprocess.Popen, bool], None] | None = None,
             cancelled: Callable[[], bool] = lambda: False,
             tether: Tether | None = None, keep_fds: tuple[int, ...] = ()) -> Completion:
    """Run a task's commands in order with `/bin/sh -c`, stopping at the first failure.

    A plain function, so that any executor can run it, here or on another machine.
    `track(process, running)` hears of each child; `cancelled()`, asked every
    _CANCEL_POLL_SECONDS while a command runs, stops its process group when true.
    `tether`, when given, is told of each command's process group while it runs;
    `keep_fds` stay open in every command."""
    import subprocess

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
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       pass_fds=keep_fds)
            if tether:
                tether.arm(process.pid)
            if track:
                track(process, True)
            try:
                output += _communicate(process, cancelled, tether.disarm if tether else None)
            finally:
                if track:
                    track(process, False)
            if process.returncode != 0:
                return Completion(task.id, process.returncode, bytes(output), started,
                                  time.time(), command)
        return Completion(task.id, 0, bytes(output), started, time.time())
    except Exception as error:      # noqa: BLE001 - the build must hear of any failure
        return Completion(task.id, 127, b"", started, time.time(), error=str(error))


_CANCEL_POLL_SECONDS = 0.2


def _communicate(process: "subprocess.Popen", cancelled: Callable[[], bool],
                 exited: Callable[[], None] | None = None) -> bytes:
    """The command's output once it has ended; if `cancelled()` turns true first, its
    process group is stopped: SIGTERM, up to the grace period, SIGKILL (the rest of the
    group too). `exited()` is called once it has exited and before it is reaped: until
    then its pid, which is its group's id, cannot be given to another process."""
    assert process.stdout is not None
    stdout = process.stdout.fileno()
    poller = select.poll()
    poller.register(stdout, select.POLLIN)
    output = bytearray()
    reading = True
    stopping = _Stopping(process.pid)
    pause = 0.001
    while True:
        if reading:
            for _ in poller.poll(_CANCEL_POLL_SECONDS * 1000):
                data = os.read(stdout, _READ_SIZE)
                if data:
                    output += data
                else:
                    reading = False
        elif _has_exited(process.pid):
            break
        else:                       # its output closed and it has not exited yet: rare
            time.sleep(pause)
            pause = min(2 * pause, _CANCEL_POLL_SECONDS)
        stopping.step(cancelled)
    process.stdout.close()
    if stopping.started:
        _kill_group(process.pid, signal.SIGKILL)     # what is left of its group
    if exited:
        exited()
    process.wait()
    return bytes(output)


class _Stopping:
    """SIGTERM to a command's group once the task is cancelled, SIGKILL a grace period
    later; cancellation is asked at most every _CANCEL_POLL_SECONDS."""

    def __init__(self, group: int):
        self.group = group
        self.started = False
        self._next_check = time.monotonic() + _CANCEL_POLL_SECONDS
        self._kill_at = 0.0

    def step(self, cancelled: Callable[[], bool]) -> None:
        now = time.monotonic()
        if not self.started:
            if now >= self._next_check:
                self._next_check = now + _CANCEL_POLL_SECONDS
                if cancelled():
                    self.started = True
                    self._kill_at = now + _KILL_GRACE_SECONDS
                    _kill_group(self.group, signal.SIGTERM)
        elif self._kill_at and now >= self._kill_at:
            self._kill_at = 0.0
            _kill_group(self.group, signal.SIGKILL)


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, leaving it to be reaped (its pid stays taken)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:       # reaped already (SIGCHLD ignored): gone all the same
        return True


def _kill_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def wait_on(finished: queue.SimpleQueue, timeout: float | None) -> Completion | None:
    """The next completion; short waits in a loop keep the main thread responsive to Ctrl-C."""
    import queue

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        try:
            return finished.get(timeout=step)
        except queue.Empty:
            if deadline is not None and time.monotonic() >= deadline:
                return None
