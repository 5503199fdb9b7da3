"""One build at a time per project: an advisory lock on `.rlmake/lock`."""

from __future__ import annotations

import fcntl
import os
from typing import Callable

from rlmake.errors import BuildLocked


class ProjectLock:
    def __init__(self, state_dir: str):
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "lock")
        self._fd: int | None = None

    def acquire(self, wait: bool, on_wait: Callable[[str], None]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            if not wait:
                os.close(fd)
                raise BuildLocked(f"another rlmake build (pid {holder}) is running in this "
                                  "project; not waiting (--no-wait)") from None
            on_wait(f"waiting for another rlmake build (pid {holder}) in this project to finish...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
