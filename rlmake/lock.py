"""One build at a time per project: an advisory lock on `.rlmake/lock`.

A build's commands inherit, in RLMAKE_BUILDING, the pids of the builds they run
under. A command that starts `rlmake build` (or `clean`) of a project whose lock
one of those holds would wait for its own parent forever: it is refused at once.
"""

from __future__ import annotations

import fcntl
import os
from typing import Callable

from rlmake.errors import BuildLocked
from rlmake.statedir import make_state_dir, unusable

BUILDS_ENV = "RLMAKE_BUILDING"
LOCKS_TABLE = "/proc/locks"


class ProjectLock:
    def __init__(self, state_dir: str):
        make_state_dir(state_dir)
        self.path = os.path.join(state_dir, "lock")
        self._fd: int | None = None
        self._announced = False

    def acquire(self, wait: bool, on_wait: Callable[[str], None]) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise unusable("lock file", self.path, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            if holder in _builds_above():
                os.close(fd)
                raise BuildLocked(f"rlmake is already building this project (pid {holder}); "
                                  "a command cannot start a build of the same project, nor "
                                  "clean it, while that build runs") from None
            if not wait:
                os.close(fd)
                raise BuildLocked(f"another rlmake build (pid {holder}) is running in this "
                                  "project; not waiting (--no-wait)") from None
            on_wait(f"waiting for another rlmake build (pid {holder}) in this project to finish...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        self._announce()

    def release(self) -> None:
        if self._fd is not None:
            self._withdraw()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    # Commands inherit rlmake's environment (the executor copies it when it is made, after
    # the lock is taken): that is how they learn which builds they run under.
    def _announce(self) -> None:
        pids = _announced_builds()
        if str(os.getpid()) not in pids:
            os.environ[BUILDS_ENV] = " ".join([*pids, str(os.getpid())])
            self._announced = True

    def _withdraw(self) -> None:
        if self._announced:
            pids = [pid for pid in _announced_builds() if pid != str(os.getpid())]
            if pids:
                os.environ[BUILDS_ENV] = " ".join(pids)
            else:
                os.environ.pop(BUILDS_ENV, None)
            self._announced = False


def build_running(state_dir: str) -> bool:
    """Whether a build holds the project's lock now, as /proc/locks shows it: a lock on the
    lock file's inode, held by the pid the file names. Looked at, not tried: even a
    moment's lock taken here would make a build starting then wait, or with --no-wait
    fail. The device is not compared: btrfs gives stat() another number than the table.
    False where it cannot be told: no /proc, or a build in another PID namespace."""
    try:
        fd = os.open(os.path.join(state_dir, "lock"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            inode = str(os.fstat(fd).st_ino).encode()
            holder = os.pread(fd, 64, 0).strip()
        finally:
            os.close(fd)        # a flock belongs to the build's own open file: not undone
        with open(LOCKS_TABLE, "rb") as locks:
            table = locks.read()
    except OSError:
        return False
    for line in table.splitlines():
        fields = line.split()    # "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF"
        if len(fields) > 5 and fields[1] == b"FLOCK" and fields[4] == holder \
                and fields[5].rsplit(b":", 1)[-1] == inode:
            return True
    return False


def _announced_builds() -> list[str]:
    return os.environ.get(BUILDS_ENV, "").split()


def _builds_above() -> list[str]:
    """The pids of the builds this process is a command of. Its own pid is left out: another
    thread of this process building the same project is worth waiting for."""
    return [pid for pid in _announced_builds() if pid != str(os.getpid())]
