"""Snapshots of plans found wholly up to date: the no-op fast path.

When a build ends with every job of its plan verified up to date, rlmake
stores the stat (device, inode, size, mtime) and digest of every file the
plan involves: its sources, its outputs and the files its depfiles listed.
The next build stats those files; if none changed, nothing can be stale and
the build is over without reading a record or computing a key. If some
changed, only the jobs that touch them, and their dependents, need deciding.

Equal stat means equal content exactly as it does for the digest memo
(hashing.py), with the same guard: a file modified too close to the moment
the snapshot was taken could change again within one timestamp tick, so such
an entry is trusted only after its content is hashed again and matches; the
snapshot is then refreshed, so this happens once. Any recorded run voids
every snapshot (state.py), so a snapshot never outlives a change of records.
"""

from __future__ import annotations

import marshal
import os
import time
from dataclasses import dataclass, field
from typing import Mapping

from rlmake.hashing import RACY_WINDOW_NS, StatMemo, digest_file

FORMAT = 2


@dataclass(frozen=True)
class Snapshot:
    taken_ns: int
    files: tuple[tuple, ...]                        # (path, dev, ino, size, mtime_ns, digest)
    depfile_readers: dict[str, tuple[str, ...]]      # depfile dep -> jobs whose depfile lists it
    needs_refresh: bool = field(default=False, compare=False)

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


def changed_files(snapshot: Snapshot, project_dir: str) -> tuple[set[str], Snapshot | None]:
    """The snapshot's files that differ now (or are gone), and, when some entries were
    too fresh to trust by stat but proved unchanged, a refreshed snapshot to store."""
    changed = set()
    racy_before = snapshot.taken_ns - RACY_WINDOW_NS
    verified = False
    directory = os.open(project_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        stat = os.stat
        for path, dev, ino, size, mtime_ns, digest in snapshot.files:
            try:
                now = stat(path, dir_fd=directory)
            except OSError:
                changed.add(path)
                continue
            if now.st_mtime_ns != mtime_ns or now.st_size != size or now.st_ino != ino \
                    or now.st_dev != dev:
                changed.add(path)
            elif mtime_ns >= racy_before:
                verified = True
                if _digest_at(directory, project_dir, path) != digest:
                    changed.add(path)
    finally:
        os.close(directory)
    if verified and not changed:
        return changed, Snapshot(time.time_ns(), snapshot.files, snapshot.depfile_readers)
    return changed, None


def _digest_at(directory: int, project_dir: str, path: str) -> str | None:
    try:
        return digest_file(os.path.join(project_dir, path))
    except OSError:
        return None


def capture(paths: list[str], fresh: Mapping[str, StatMemo], memo_of,
            previous: Snapshot | None, changed: set[str],
            depfile_readers: dict[str, tuple[str, ...]], now_ns: int) -> Snapshot | None:
    """A snapshot of `paths`, or None if any has no known stat and digest.

    `fresh`: files hashed during this build; `previous`: the last snapshot, whose
    entries are good for files not changed since; `memo_of(path)`: the digest memo.
    """
    if previous is not None and len(paths) == len(previous.files) \
            and all(entry[0] == path for entry, path in zip(previous.files, paths)):
        return _update(previous, fresh, memo_of, changed, depfile_readers, now_ns)
    known = previous.stats() if previous is not None else {}
    entries = []
    for path in paths:
        entry = _entry(path, fresh.get(path))
        if entry is None and path not in changed:
            entry = known.get(path)
        if entry is None:
            entry = _entry(path, memo_of(path))
        if entry is None:
            return None
        entries.append(entry)
    return Snapshot(now_ns, tuple(entries), depfile_readers)


def _update(previous: Snapshot, fresh, memo_of, changed, depfile_readers, now_ns):
    """The same files as last time: keep every entry but those this build hashed or saw
    change (an edit in a 10,000-file plan rewrites a handful)."""
    renewed = {}
    for path in changed.union(fresh):
        entry = _entry(path, fresh.get(path)) or _entry(path, memo_of(path))
        if entry is None:
            return None
        renewed[path] = entry
    if not renewed:
        return Snapshot(now_ns, previous.files, depfile_readers)
    entries = tuple(renewed.get(entry[0], entry) for entry in previous.files)
    return Snapshot(now_ns, entries, depfile_readers)


def _entry(path: str, memo: StatMemo | None) -> tuple | None:
    if memo is None:
        return None
    return (path, memo.dev, memo.ino, memo.size, memo.mtime_ns, memo.digest)
