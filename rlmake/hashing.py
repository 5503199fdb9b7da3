"""Content digests of files, memoised by stat, and job keys from canonical structures."""

from __future__ import annotations

import errno
import json
import os
import stat as stat_module
import time
from typing import Any, Iterable, NamedTuple

from rlmake.errors import UnreadableFile

try:        # BLAKE2 is built into CPython; hashlib would also load OpenSSL (2.5 ms per run)
    from _blake2 import blake2b
except ImportError:     # another Python
    from hashlib import blake2b

HASH_MODES = ("content", "fast")
DIGEST_SIZE = 20
# A memo entry is trusted only for a file last modified (or changed: ctime) this long
# before it was hashed: a later write within the same timestamp tick would keep its stat.
RACY_WINDOW_NS = 1_000_000_000
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    return blake2b(data, digest_size=DIGEST_SIZE).hexdigest()


def digest_structure(value: Any) -> str:
    """The digest of a JSON-able structure; callers tag it with its kind as the first item."""
    return digest_bytes(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def digest_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)     # not open(): a file object costs 3 more system calls
    try:
        return _digest_fd(fd)
    finally:
        os.close(fd)


def digest_regular_file(path: str) -> str:
    """The digest of `path`, which must be a regular file: a FIFO, a device or a directory
    raises OSError without being read, so that a path someone else chose can neither
    block rlmake nor make it read without end."""
    if not stat_module.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)     # swapped for a FIFO since: no wait
    try:
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return _digest_fd(fd)
    finally:
        os.close(fd)


LOWER_HEX = "0123456789abcdef"      # the digits of a digest as rlmake writes it


def is_digest(value: object) -> bool:
    """A content digest as digest_file writes it (what a blob may be stored under)."""
    return (isinstance(value, str) and len(value) == 2 * DIGEST_SIZE
            and not value.strip(LOWER_HEX))


def _digest_fd(fd: int) -> str:
    hasher = blake2b(digest_size=DIGEST_SIZE)
    while chunk := os.read(fd, _CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


class StatMemo(NamedTuple):
    """What a file looked like when it was hashed.

    The ctime is part of it because the mtime is the writer's to set: an edit that
    keeps the size and puts the mtime back (os.utime, `touch -r`, tar, rsync -t)
    leaves the rest of the stat as it was, but the kernel moves the ctime on. An
    entry with ctime 0 (from before it was recorded) never matches."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    digest: str
    hashed_ns: int
    ctime_ns: int = 0

    def matches(self, stat: os.stat_result) -> bool:
        return (stat.st_mtime_ns == self.mtime_ns and stat.st_ctime_ns == self.ctime_ns
                and stat.st_size == self.size and stat.st_ino == self.ino
                and stat.st_dev == self.dev
                and max(stat.st_mtime_ns, stat.st_ctime_ns) + RACY_WINDOW_NS < self.hashed_ns)


class FileHasher:
    """Digests of project files; reads a file only when its stat differs from the memo.

    `mode` "fast" digests (size, mtime) instead of content, for huge data files.
    """

    def __init__(self, project_dir: str, memo: dict[str, StatMemo], mode: str = "content"):
        self.project_dir = project_dir
        self.memo = memo
        self.mode = mode
        self.updated: dict[str, StatMemo] = {}

    def digest(self, path: str) -> str | None:
        """The digest of `path` (project-relative or absolute), or None if it is missing.

        Raises UnreadableFile if it is there but cannot be read, or its name cannot be
        recorded: every record is UTF-8."""
        full = os.path.join(self.project_dir, path)
        stat = self._stat(path, full)
        if stat is None:
            return None
        if self.mode == "fast":
            return f"fast:{stat.st_size}:{stat.st_mtime_ns}"
        known = self.memo.get(path)
        if known is not None and known.matches(stat):
            return known.digest
        return self._rehash(path, full, stat)

    def exists(self, path: str) -> bool:
        """Whether `path` is there, judged as `digest` would judge it (and raising what it
        raises) without reading it: for a dry run, where a job never built needs no key."""
        return self._stat(path, os.path.join(self.project_dir, path)) is not None

    @staticmethod
    def _stat(path: str, full: str) -> os.stat_result | None:
        if not path.isascii() and not _is_utf8(path):
            raise UnreadableFile(path, "its name is not valid UTF-8 (rename it)")
        try:
            stat = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise UnreadableFile.from_os_error(path, error) from None
        except ValueError:
            raise UnreadableFile(path, "its name holds a NUL byte") from None
        if not stat_module.S_ISREG(stat.st_mode) and not stat_module.S_ISDIR(stat.st_mode):
            # reading a FIFO waits for a writer, a device may never end
            raise UnreadableFile(path, "not a regular file (a FIFO, socket or device)")
        return stat

    def _rehash(self, path: str, full: str, stat: os.stat_result) -> str | None:
        # Taken before the read, not after: a write during a read longer than the racy
        # window would otherwise look old enough to trust by stat.
        hashed_ns = time.time_ns()
        try:
            digest = digest_file(full)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            digest = "dir"
        except OSError as error:
            raise UnreadableFile.from_os_error(path, error) from None
        entry = StatMemo(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, digest,
                         hashed_ns, stat.st_ctime_ns)
        self.memo[path] = self.updated[path] = entry
        return digest

    def hashed_as(self, path: str, digest: str) -> tuple[int, int, int, int] | None:
        """(inode, size, mtime, ctime) of `path` when it was last found to hold `digest`,
        or None if the memo does not say (fast mode keeps none)."""
        known = self.memo.get(path)
        if known is None or known.digest != digest:
            return None
        return (known.ino, known.size, known.mtime_ns, known.ctime_ns)

    def forget(self, paths: Iterable[str]) -> None:
        """Drop memo entries of files a job may have rewritten, so they are rehashed."""
        for path in paths:
            self.memo.pop(path, None)


def _is_utf8(path: str) -> bool:
    try:
        path.encode()
    except UnicodeEncodeError:          # undecodable bytes, kept as lone surrogates
        return False
    return True


def job_key(target: str, commands: Iterable[str], env: Iterable[tuple[str, str]],
            outputs: Iterable[str], dep_digests: Iterable[tuple[str, str | None]]) -> str:
    """The identity of one job's work: what it runs and exactly what it reads."""
    return digest_structure(["job", 1, target, list(commands), sorted(map(list, env)),
                             sorted(outputs), [list(pair) for pair in dep_digests]])


def combined_digest(kind: str, digests: Iterable[str | None]) -> str:
    """The content of a phony or aggregate target as its dependents see it."""
    return digest_structure([kind, list(digests)])
