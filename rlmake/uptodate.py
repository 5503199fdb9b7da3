"""Snapshots of plans found wholly up to date: the no-op fast path.

When a build ends with every job of its plan verified up to date, rlmake
stores the stat (device, inode, size, mtime) of every file the plan involves:
its sources, its outputs and the files its depfiles listed. The next build
stats those files; if none changed, nothing can be stale and the build is
over without reading a record or computing a key. If some changed, only the
jobs that touch them, and their dependents, need deciding ("dirty").

Equal stat means equal content here exactly as it does for the digest memo
(hashing.py): an entry is only captured for a file whose mtime is safely
older than the moment it was hashed. Any recorded run voids every snapshot
(state.py), so a snapshot never outlives a change of records.
"""

from __future__ import annotations

import marshal
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

from rlmake.hashing import RACY_WINDOW_NS, StatMemo

FORMAT = 1


@dataclass(frozen=True)
class Snapshot:
    taken_ns: int
    files: tuple[tuple, ...]                        # (path, dev, ino, size, mtime_ns)
    depfile_readers: dict[str, tuple[str, ...]]      # depfile dep -> jobs whose depfile lists it

    def encode(self) -> bytes:
        return marshal.dumps((FORMAT, self.files, self.depfile_readers))

    @classmethod
    def decode(cls, taken_ns: int, blob: bytes) -> "Snapshot | None":
        try:
            form, files, readers = marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            return None
        return cls(taken_ns, files, readers) if form == FORMAT else None

    def stats(self) -> dict[str, tuple]:
        return {entry[0]: entry for entry in self.files}


def changed_files(snapshot: Snapshot, project_dir: str) -> set[str]:
    """The snapshot's files whose stat differs now (or that are gone)."""
    changed = set()
    directory = os.open(project_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        stat = os.stat
        for path, dev, ino, size, mtime_ns in snapshot.files:
            try:
                now = stat(path, dir_fd=directory)
            except OSError:
                changed.add(path)
                continue
            if now.st_mtime_ns != mtime_ns or now.st_size != size or now.st_ino != ino \
                    or now.st_dev != dev:
                changed.add(path)
    finally:
        os.close(directory)
    return changed


def capture(paths: Iterable[str], fresh: Mapping[str, StatMemo], memo_of,
            previous: dict[str, tuple] | None, changed: set[str],
            depfile_readers: dict[str, tuple[str, ...]], now_ns: int) -> Snapshot | None:
    """A snapshot of `paths`, or None if any has no trustworthy stat.

    `fresh`: files hashed during this build; `previous`: the last snapshot's
    entries, good for files not changed since; `memo_of(path)`: the digest memo.
    """
    entries = []
    for path in paths:
        entry = _entry(path, fresh.get(path))
        if entry is None and previous is not None and path not in changed:
            entry = previous.get(path)
        if entry is None:
            entry = _entry(path, memo_of(path))
        if entry is None:
            return None
        entries.append(entry)
    return Snapshot(now_ns, tuple(entries), depfile_readers)


def _entry(path: str, memo: StatMemo | None) -> tuple | None:
    if memo is None or memo.mtime_ns + RACY_WINDOW_NS >= memo.hashed_ns:
        return None
    return (path, memo.dev, memo.ino, memo.size, memo.mtime_ns)
