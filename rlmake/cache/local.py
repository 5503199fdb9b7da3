"""A store in a local directory: `.rlmake/cache` by default, or a shared volume.

Layout: `ac/KEY[:2]/KEY` for action records, `cas/DIGEST[:2]/DIGEST` for blobs,
`rlmake-store.json` for the marker of a signed store (see trust.py).
Every write goes to a temporary file that is renamed into place, so readers
never see half an entry. A hit touches the entry's mtime, and so does storing a
blob the store already has: `gc` and the size cap remove the least recently used
first.

A blob is always a copy of the output, never a hard link to it: a link shares the
inode, and a command that later rewrites its output in place (`>>`, a linker
writing over its old file) would change the stored blob under its digest. The
copy is made with copy_file_range, which on a file system with reflinks (Btrfs,
XFS, bcachefs) shares the blocks copy-on-write instead of copying them, and
elsewhere copies inside the kernel; a restore copies the same way.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable

from rlmake.cache.base import MARKER_NAME, StoreError, is_temporary, open_temporary
from rlmake.hashing import digest_file

TEMPORARY_PREFIX = ".tmp-"
# As any new file, less the umask: a store on a shared volume is read by other users too.
ENTRY_MODE = 0o666


class LocalStore:
    is_local = True

    def __init__(self, root: str, name: str | None = None, max_bytes: int | None = None):
        self.root = root
        self.name = name or root
        self.max_bytes = max_bytes      # the project's own store: its size cap (cap.py)
        self.bytes_written = 0          # by this process: what the cap's estimate adds
        self._made_dirs: set[str] = set()

    def _path(self, kind: str, name: str) -> str:
        return os.path.join(self.root, kind, name[:2], name)

    def get_action(self, key: str) -> bytes | None:
        path = self._path("ac", key)
        try:
            fd = open_regular(path)
            try:
                data = read_all(fd)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error.strerror}") from None
        _touch(path)
        return data

    def put_action(self, key: str, data: bytes) -> None:
        self._write(self._path("ac", key), lambda fd: write_all(fd, data))
        self.bytes_written += len(data)

    def has_blob(self, digest: str) -> bool:
        """Asked before storing: a blob a new record will name is in use, so it is
        touched (one system call either way), lest the cap remove it as long unused."""
        path = self._path("cas", digest)
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False
        except OSError:                 # someone else's file in a shared store
            return os.path.exists(path)

    def fetch_blob(self, digest: str, destination: str) -> bool:
        path = self._path("cas", digest)
        try:
            _copy(path, destination)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error.strerror}") from None
        _touch(path)
        return True

    def put_blob(self, digest: str, source: str) -> None:
        self._copy_in(digest, source, None)

    def put_checked_blob(self, digest: str, source: str) -> int | None:
        """Copy `source` in under `digest` only if the copy holds the bytes `digest` names
        (else `source` was rewritten since it was hashed): the bytes stored, or None."""
        return self._copy_in(digest, source, lambda copy: digest_file(copy) == digest)

    def _copy_in(self, digest: str, source: str,
                 keep: Callable[[str], bool] | None) -> int | None:
        origin = os.open(source, os.O_RDONLY)
        try:
            size = os.fstat(origin).st_size
            kept = self._write(self._path("cas", digest), lambda fd: _copy_fd(origin, fd, size),
                               keep)
        finally:
            os.close(origin)
        if not kept:
            return None
        self.bytes_written += size
        return size

    def after_build(self, warn) -> None:
        """Keep the store under its cap, if it has one and this build wrote to it."""
        if self.max_bytes is None or not self.bytes_written:
            return
        from rlmake.cache.cap import keep_under

        try:
            keep_under(self, self.max_bytes, self.bytes_written)
        except (OSError, StoreError) as error:
            warn(f"cache {self.name}: could not keep it under its size cap: {error}")
        self.bytes_written = 0

    def get_marker(self, limit: int) -> bytes | None:
        path = os.path.join(self.root, MARKER_NAME)
        try:
            fd = open_regular(path)        # a FIFO or a directory there is an error
            try:
                return read_all(fd, limit)
            finally:
                os.close(fd)
        except FileNotFoundError:
            if os.path.lexists(path):       # a dangling link is not "no marker"
                raise StoreError(f"cannot read {path}: a dangling symbolic link") from None
            return None
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error.strerror}") from None

    def put_marker(self, data: bytes) -> None:
        """Linked into place rather than renamed: whatever appeared there since the marker
        was found missing is left as it is."""
        path = os.path.join(self.root, MARKER_NAME)
        try:
            os.makedirs(self.root, exist_ok=True)
            temporary, fd = open_temporary(self.root, TEMPORARY_PREFIX, ENTRY_MODE)
            try:
                try:
                    write_all(fd, data)
                finally:
                    os.close(fd)
                _link_new(temporary, path)
            except FileExistsError:
                pass
            finally:
                try:
                    os.unlink(temporary)
                except FileNotFoundError:    # renamed into place
                    pass
        except OSError as error:
            raise StoreError(f"cannot write {path}: {error.strerror}") from None

    def _write(self, path: str, write, keep: Callable[[str], bool] | None = None) -> bool:
        """Call `write(fd)` on a new temporary file, then rename it to `path`, unless
        `keep(temporary)` says not to: then it is removed. Whether it was kept."""
        directory = os.path.dirname(path)
        try:
            if directory not in self._made_dirs:
                os.makedirs(directory, exist_ok=True)
                self._made_dirs.add(directory)
            temporary, fd = open_temporary(directory, TEMPORARY_PREFIX, ENTRY_MODE)
            try:
                try:
                    write(fd)
                finally:
                    os.close(fd)
                if keep is not None and not keep(temporary):
                    os.unlink(temporary)
                    return False
                os.replace(temporary, path)
                return True
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as error:
            raise StoreError(f"cannot write {path}: {error.strerror}") from None

    # --- housekeeping (rlmake.cache.housekeeping) ------------------------------------------

    tracks_use = True       # a hit touches the entry: its mtime is its last use

    def entries(self):
        """Every record and blob, as housekeeping.Entry: only regular files named by a
        digest in their shard (`ac/ab/ab...`), a real directory; anything else here is
        not rlmake's (a symlinked shard could lead gc out of the store)."""
        from rlmake.cache.housekeeping import KINDS, Entry, is_entry_name

        for kind in KINDS:
            top = os.path.join(self.root, kind)
            for shard in self._listing(top):
                directory = os.path.join(top, shard)
                if len(shard) != 2 or os.path.islink(directory):
                    continue
                for name in self._listing(directory):
                    if not (is_entry_name(name) and name.startswith(shard)):
                        continue
                    try:
                        info = os.lstat(os.path.join(directory, name))
                    except FileNotFoundError:
                        continue            # removed since it was listed
                    except OSError as error:
                        raise StoreError(f"cannot read {directory}/{name}: {error.strerror}") \
                            from None
                    if stat.S_ISREG(info.st_mode):
                        yield Entry(kind, name, info.st_size, info.st_mtime)

    def remove(self, entries):
        """Remove `entries`, yielding each one removed; one used since it was listed (a
        newer mtime) or already gone is skipped."""
        for entry in entries:
            path = self._path(entry.kind, entry.key)
            try:
                if os.lstat(path).st_mtime > entry.last_used:
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise StoreError(f"cannot remove {path}: {error.strerror}") from None
            yield entry

    def remove_temporaries(self, written_before: float | None = None) -> tuple[int, int]:
        """Remove the temporary files that writes killed halfway left; (count, bytes).
        Without `written_before`, only for a store no one is writing to now (its project's
        lock is held); with it, only those last written before that time (a shared store,
        where a write may be under way)."""
        removed = freed = 0
        for kind in ("ac", "cas"):
            for directory, _, files in os.walk(os.path.join(self.root, kind)):
                for name in files:
                    if not is_temporary(name, TEMPORARY_PREFIX):
                        continue
                    path = os.path.join(directory, name)
                    try:
                        info = os.lstat(path)
                        if written_before is not None and info.st_mtime >= written_before:
                            continue
                        os.unlink(path)
                    except OSError:
                        continue
                    removed += 1
                    freed += info.st_size
        return removed, freed

    @staticmethod
    def _listing(directory: str) -> list[str]:
        try:
            return sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as error:
            raise StoreError(f"cannot list {directory}: {error.strerror}") from None


# Descriptors and os.read/os.write, not open() and shutil: a store per job adds up, and
# a file object costs three extra system calls to open, shutil 2 ms to import.
def _copy(source: str, destination: str) -> None:
    origin = open_regular(source)
    try:
        target = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _copy_fd(origin, target, os.fstat(origin).st_size)
        finally:
            os.close(target)
    finally:
        os.close(origin)


def open_regular(path: str) -> int:
    """A descriptor for reading the entry at `path`, which must be a regular file: in a
    shared store anyone may have left a FIFO (reading it would wait for ever) or a
    device there."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def read_all(fd: int, limit: int | None = None) -> bytes:
    chunks = []
    left = limit
    while chunk := os.read(fd, 1 << 20 if left is None else min(left, 1 << 20)):
        chunks.append(chunk)
        if left is not None:
            left -= len(chunk)
            if left == 0:
                break
    return b"".join(chunks)


def _link_new(source: str, path: str) -> None:
    """Give `source` the name `path` only if nothing has it (FileExistsError otherwise);
    where the filesystem has no hard links, a rename after a look is the best there is."""
    try:
        os.link(source, path)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", path) from None
        os.replace(source, path)


def _copy_fd(origin: int, target: int, size: int) -> None:
    """Copy `origin` (at offset 0, `size` bytes by its fstat) into `target`: in the kernel,
    reflinked where the file system can, in one system call for a file that does not
    change meanwhile; through memory where the kernel cannot copy between the two.
    (A file changed since it was hashed makes a blob that no restore accepts: every
    restore checks the blob's digest.)"""
    copied = 0
    if _KERNEL_COPY:
        try:
            while copied < size and (done := os.copy_file_range(origin, target, size - copied)):
                copied += done
            return
        except OSError as error:
            if error.errno not in _NO_KERNEL_COPY or copied:
                raise
    while block := os.read(origin, 1 << 20):
        write_all(target, block)


# copy_file_range's answers meaning "not between these two files" (an old kernel, two
# file systems, a FUSE mount): nothing was copied, so copy through memory instead
_NO_KERNEL_COPY = (errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP)
_KERNEL_COPY = hasattr(os, "copy_file_range")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _touch(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass
