"""Commands an earlier build left running, and stopping them.

Each command runs in a session of its own, so that a cancel reaches whatever it
starts; the price is that a command outlives an rlmake that dies without
stopping it (SIGKILL, a crash). Left alone it would go on writing outputs while
the next build hashes and records them. So the local executor keeps in
`.rlmake/running` each running command's process group and when its leader
started, so that a pid the system has since given to another process is never
taken for it: the next build compares that with field 22 of /proc/PID/stat
(clock ticks since boot). Reading that field right after the spawn costs half
a millisecond (the child is busy in exec), so the executor records instead
the boot clock's ticks just before and just after it: the start time lies
between them, and a pid handed out again, after the command ended, cannot.
The next build, once it holds the project lock, stops every group still
alive from that file.

The file is a log: `>TARGET` just before a command of job TARGET starts (written
at once), `+GROUP SINCE UNTIL` once it runs and `-GROUP` when it ends (both
batched with the next write), each write a single write() to a descriptor
opened O_APPEND, which a SIGKILL cannot split. Appending costs a
microsecond or two; replacing a file by rename costs ext4 milliseconds (it
flushes the data first), which a 1,000-job build would feel. Writer and reader
never overlap: the reader holds the project lock the writer held until it died.
Without /proc or a boot clock nothing is recorded.

A command's pid is known only once it runs, and a loaded machine may leave
rlmake without the CPU for many milliseconds between a spawn and its log line:
a SIGKILL then would leave a command nobody listed. So each build also puts a
random token in every command's environment (RLMAKE_BUILD_TOKEN) and logs it
before its first spawn; a build that finds the log of one that died looks
for processes carrying that token in /proc/PID/environ as well.

The log also says which jobs a build that died had running: those whose last
command started and was not seen to end. Their commands, stopped unfinished,
may have written anything (a depfile cut short, a side file) while leaving the
outputs as the job's last record has them, which would pass for up to date; so
the next build hands them to the state database (StateDB.mark_unfinished),
which forgets their records and keeps them to be run, not restored, until a run
of theirs succeeds. The commands a cancel stops (Ctrl-C) stay in the log as
unfinished for the same reason.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from typing import Callable, NamedTuple

FILE_NAME = "running"
TOKEN_VARIABLE = "RLMAKE_BUILD_TOKEN"
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_CAN_RECORD = os.path.isdir("/proc/self") and hasattr(time, "CLOCK_BOOTTIME")
_GRACE_SECONDS = 1.0          # between SIGTERM and SIGKILL for a leftover group
_DEATH_SECONDS = 2.0          # for the kernel to finish a SIGKILLed group
_PID_MAX = 1 << 22            # Linux's limit: a larger "pid" is damage (and overflows kill)
_LOG_LIMIT = 64 << 20         # bytes of a log read: a 100,000-job build writes about 10 MB


class CommandRecord:
    """The process groups of the commands this build has running, logged to a file."""

    def __init__(self, state_dir: str):
        self.path = _log_path(state_dir)
        self._running: set[int] = set()
        self._pending: list[str] = []           # log lines not written yet
        self._fd: int | None = None
        self._failed = False                    # a write failed: the log is given up
        self.token = os.urandom(8).hex()         # in every command's environment

    def clock(self, target: str) -> int:
        """Call just before starting a command of the job `target`; pass the answer to
        `started`. The job is on disk before its command can run (with the token, the
        first time), so that rlmake killed a moment later still leaves it listed."""
        if not _CAN_RECORD:
            return -1
        if self._fd is None:
            self._pending.insert(0, f"={self.token}\n")
        self._pending.append(f">{_escaped(target)}\n")
        self.flush()
        return boot_ticks()

    def started(self, pid: int, since: int) -> None:
        """The command has started since `clock()`, leading its own process group `pid`.
        Written with the next line: until then the token finds it."""
        if since >= 0:
            self._running.add(pid)
            # a tick of slack each side: the kernel rounds its own clock to ticks
            self._pending.append(f"+{pid} {since - 1} {boot_ticks() + 1}\n")

    def ended(self, pid: int) -> None:
        if pid in self._running:
            self._running.discard(pid)
            self._pending.append(f"-{pid}\n")

    def flush(self) -> None:
        """Append what changed since the last call, in one write. Ends wait for the next
        start or the executor's next turn: listed a little longer, they cost nothing."""
        if not self._pending or self._failed:
            self._pending.clear()
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                                   | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            os.write(self._fd, "".join(self._pending).encode())
        except OSError:
            # A full disk or an immutable file: the log only helps the build after an
            # rlmake killed outright, and must not stop this one (and leave its commands
            # running). The token, if written, still finds them; else nothing is listed.
            self._failed = True
        self._pending.clear()

    def close(self) -> None:
        """The build is over: the file goes, unless a command is still listed (one that
        could not be stopped, or one a cancel stopped: unfinished, for the next build)."""
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._running:
                _remove(self.path)


class Log(NamedTuple):
    """What a log says of the build that wrote it."""

    tokens: set[str]                            # the builds' tokens
    running: dict[int, tuple[int, int]]         # group -> when its leader started (the
                                                # first and last tick it can have)
    unfinished: set[str]                        # jobs whose last command was not seen to end


def read_log(path: str) -> Log:
    log = Log(set(), {}, set())
    try:
        lines = _read_regular(path, _LOG_LIMIT).split(b"\n")
    except OSError:
        return log
    starting: str | None = None                 # the job whose command starts next
    jobs: dict[int, str] = {}                   # group -> its job
    for line in lines:
        if line.startswith(b">"):
            if starting is not None:            # its spawn failed, or rlmake died in it
                log.unfinished.add(starting)
            starting = _unescaped(line[1:])
        elif line.startswith(b"=") and line[1:].isalnum():
            log.tokens.add(line[1:].decode("ascii"))
        else:
            starting = _replay(line, log.running, jobs, starting)
    if starting is not None:
        log.unfinished.add(starting)
    log.unfinished.update(jobs[group] for group in log.running if group in jobs)
    return log


def _read_regular(path: str, limit: int) -> bytes:
    """Up to `limit` bytes of the file at `path`; nothing unless it is a regular file.
    Damage or an archive must not stop the build: not a FIFO nobody writes to, nor
    /dev/zero."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks = []
        while limit > 0:
            chunk = os.read(fd, min(limit, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _replay(line: bytes, running: dict[int, tuple[int, int]], jobs: dict[int, str],
            starting: str | None) -> str | None:
    """A start or an end; the job still waiting for its command's start after it."""
    fields = line[1:].split()
    if not fields or not all(field.isdigit() for field in fields) \
            or not 1 < int(fields[0]) <= _PID_MAX:
        return starting                         # not a line this module wrote: skip it
    group = int(fields[0])
    if line.startswith(b"+") and len(fields) == 3:
        running[group] = (int(fields[1]), int(fields[2]))
        if starting is not None:
            jobs[group] = starting
        return None
    if line.startswith(b"-"):
        running.pop(group, None)
        jobs.pop(group, None)
    return starting


def _escaped(target: str) -> str:
    """One line of ASCII, whatever the name holds (a newline, a byte that is no UTF-8)."""
    return target.encode("unicode_escape").decode("ascii") if not target.isascii() \
        or not target.isprintable() or "\\" in target else target


def _unescaped(text: bytes) -> str | None:
    try:
        name = text.decode("unicode_escape")
        name.encode("utf-8")                    # as every target is (the state database)
    except UnicodeError:
        return None                             # damage: no job of ours
    return name


def logged(state_dir: str) -> Log:
    """The log in `state_dir` (empty if there is none), read without taking it over."""
    return read_log(_log_path(state_dir))


def stop_leftovers(log: Log, say: Callable[[str], None]) -> int:
    """Stop every command that the earlier build which wrote `log` left running (SIGTERM,
    a short grace, SIGKILL), and `say` so; how many there were. Call it holding the lock,
    and `remove_log` once the log's unfinished jobs are listed in the state database:
    until then the log is the only word of them."""
    tokens, listed = log.tokens, log.running
    # Only a group one of whose processes carries a logged build's token: the file is no
    # proof, since anyone who can write it could name any group (one shipped in an archive).
    carrying = _groups_carrying(tokens) if tokens else {}
    groups = {**carrying, **{group: listed[group] for group in listed if group in carrying}}
    alive = [(group, started) for group, started in groups.items()
             if group_alive(group, started)]
    if alive:
        _signal(alive, signal.SIGTERM)
        _wait_until_gone(alive, _GRACE_SECONDS)
        _signal(alive, signal.SIGKILL)
        _wait_until_gone(alive, _DEATH_SECONDS)
        say(f"stopped {len(alive)} command{'s' if len(alive) > 1 else ''} left running "
            "by an earlier build")
    return len(alive)


def remove_log(state_dir: str) -> None:
    path = _log_path(state_dir)
    try:
        _remove(path)
    except OSError as error:        # a directory, an immutable .rlmake: say which, and why
        from rlmake.statedir import unusable
        raise unusable("record of running commands", path, error) from None


def _log_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE_NAME)


def _groups_carrying(tokens: set[str]) -> dict[int, tuple[int, int]]:
    """The process groups of the processes whose environment holds one of the tokens,
    each with its leader's start time (0 when the leader is gone)."""
    marks = [f"{TOKEN_VARIABLE}={token}".encode() for token in tokens]
    groups: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as stream:
                environment = stream.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as stream:
                group = int(stream.read().rsplit(b")", 1)[1].split()[2])
        except (OSError, IndexError, ValueError):
            continue                            # gone, or not ours to read
        if any(mark in environment for mark in marks):
            started = start_time(group) or 0
            groups[group] = (started, started)
    return groups


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), None if it is gone or a zombie."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
        finally:
            os.close(fd)
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (the state) of proc(5); the start time is field 22
    return None if fields[0] == b"Z" else int(fields[19])


def boot_ticks() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND)


def group_alive(group: int, started: tuple[int, int]) -> bool:
    """Whether the recorded group still has a live process. Its leader, when there, must
    be the recorded process; when it has exited, a group of that id can only be the
    recorded one, since no pid is handed out while a group of that id exists."""
    leader = start_time(group)
    if leader is not None:
        return started[0] <= leader <= started[1]
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return _has_live_member(group)


def _has_live_member(group: int) -> bool:
    """The leader has exited but its group exists: does anyone in it still run (zombies
    waiting for a parent to reap them do not)? Rare, so a walk of /proc will do."""
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != group:
            try:
                with open(f"/proc/{name}/stat", "rb") as stream:
                    fields = stream.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group and fields[0] != b"Z":   # field 5 is the group
                return True
    return False


def _signal(groups, signum: int) -> None:
    for group, started in groups:
        if group_alive(group, started):
            try:
                os.killpg(group, signum)
            except (ProcessLookupError, PermissionError):
                pass


def _wait_until_gone(groups, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(group_alive(group, started) for group, started in groups) \
            and time.monotonic() < deadline:
        time.sleep(0.02)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
