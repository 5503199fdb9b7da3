"""Snapshots of plans found wholly up to date: the no-op fast path.

When a build ends with every job of its plan verified up to date, rlmake
stores the stat (device, inode, size, mtime, ctime) and digest of every file the
plan involves: its sources, its outputs and the files its depfiles listed.
The next build stats those files; if none changed, nothing can be stale and
the build is over without reading a record or computing a key. If some
changed, only the jobs that touch them, and their dependents, need deciding.

Equal stat means equal content exactly as it does for the digest memo
(hashing.py), with the same guard: a file modified too close to the moment
its entry was taken could change again within one timestamp tick, so such an
entry is trusted only after its content is hashed again and matches; the
entry's time is then moved on, so this happens once. Any recorded run voids
every snapshot (state.py), so a snapshot never outlives a change of records.

A snapshot is stored in pieces of PIECE_SIZE entries, each with the time its
entries were taken: after an edit, only the pieces holding the files that
changed are rewritten, not the whole snapshot of a 10,000-job plan. Its entries
are in path order and its head keeps the first path of each piece, so those
pieces are found without decoding the others.

A piece keeps the stats of its entries packed in one bytes string, and the newest
mtime or ctime among them. A no-op packs the stats it finds the same way and
compares the piece once: equal bytes are equal stats, entry by entry, and a newest
time outside the racy window is no entry too fresh to trust. Only a piece that
differs, or holds a fresh entry, is checked one entry at a time.

The stored plan's check (plancache.py) has just stat'ed every source: those stats
come here as `Seen`, and the snapshot compares them instead of stat'ing each source
a second time. They are older than the check itself, so the check counts as made
when the first of them was taken: a piece trusted on their word is retimed to that
moment, never later.
"""

from __future__ import annotations

import marshal
import os
import struct
import time
from bisect import bisect_right
from operator import itemgetter
from typing import Callable, Iterable, Mapping, NamedTuple

from rlmake.hashing import RACY_WINDOW_NS, StatMemo, digest_file
from rlmake.model import Plan

FORMAT = 6
PIECE_SIZE = 512
_path_of = itemgetter(0)

# One file as a snapshot saw it: (path, dev, ino, size, mtime_ns, ctime_ns, digest).
Entry = tuple[str, int, int, int, int, int, str]
MemoOf = Callable[[str], "StatMemo | None"]    # the digest memo's entry for a path
# (dev, ino, size, mtime_ns, ctime_ns) of a file looked at before the snapshot check:
# 73 bytes a file, where a tuple of five ints takes twice that (100,000 sources).
SEEN = struct.Struct("<QQqqq")


class Seen(NamedTuple):
    """Files stat'ed before the snapshot check, and when: the check uses each of these
    stats in place of its own, and counts as made no later than `looked_ns`."""

    looked_ns: int                  # taken before the first of these stats
    stats: dict[str, bytes]         # project path -> its stat, as `seen_stat` packs it


def seen_stat(found: os.stat_result) -> bytes | None:
    """What `Seen` keeps of a stat (None if it cannot be packed: the check stats anew)."""
    try:
        return SEEN.pack(found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns,
                         found.st_ctime_ns)
    except struct.error:
        return None


class Piece(NamedTuple):
    taken_ns: int               # no later than the moment its entries' digests were read
    blob: bytes                 # its entries, marshalled as stored (see `of`)

    @classmethod
    def of(cls, taken_ns: int, entries: tuple[Entry, ...]) -> "Piece":
        """Stored by column: the paths; every stat packed as `Seen` packs one, in one
        bytes string (or a flat tuple of ints if some stat does not pack); the newest
        mtime or ctime, which says at once whether any entry is too fresh to trust; and
        the digests, marshalled apart, as only a changed or too fresh piece reads them."""
        paths = tuple(entry[0] for entry in entries)
        try:
            stats: bytes | tuple[int, ...] = b"".join(
                SEEN.pack(*entry[1:6]) for entry in entries)
        except struct.error:
            stats = tuple(value for entry in entries for value in entry[1:6])
        newest_ns = max((max(entry[4], entry[5]) for entry in entries), default=0)
        digests = marshal.dumps(tuple(entry[6] for entry in entries))
        return cls(taken_ns, marshal.dumps((paths, stats, newest_ns, digests)))

    def columns(self) -> "Columns":
        """Decoded on each call and not kept: a no-op reads each piece once, and holding
        every entry of a 100,000-job plan at once would be most of its memory."""
        paths, stats, newest_ns, digests = marshal.loads(self.blob)
        width = SEEN.size if isinstance(stats, bytes) else 5
        if len(stats) != width * len(paths) or not isinstance(digests, bytes):
            raise ValueError("a snapshot piece that is not one")
        return Columns(paths, stats, newest_ns, digests)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry whole: what a piece that changed, or is renewed, is read as."""
        return self.columns().entries()


class Columns(NamedTuple):
    """A piece as stored: see `Piece.of`."""

    paths: tuple[str, ...]
    stats: bytes | tuple[int, ...]
    newest_ns: int
    digests: bytes

    def entries(self) -> tuple[Entry, ...]:
        if isinstance(self.stats, bytes):
            stats: Iterable[tuple[int, ...]] = SEEN.iter_unpack(self.stats)
        else:
            stats = zip(*[iter(self.stats)] * 5, strict=True)
        digests = marshal.loads(self.digests)
        return tuple((path, *stat, digest)
                     for path, stat, digest in zip(self.paths, stats, digests, strict=True))


class Snapshot(NamedTuple):
    pieces: tuple[Piece, ...]
    depfile_readers: dict[str, tuple[str, ...]]      # depfile dep -> jobs whose depfile lists it
    firsts: tuple[str, ...]         # the first path of each piece (entries are in path order)

    def encode_readers(self) -> bytes:
        return marshal.dumps((FORMAT, self.depfile_readers, self.firsts))

    def encode_pieces(self, numbers: Iterable[int]) -> dict[int, tuple[int, bytes]]:
        return {n: (self.pieces[n].taken_ns, self.pieces[n].blob) for n in numbers}

    @classmethod
    def decode(cls, readers: bytes, pieces: list[tuple[int, bytes]]) -> "Snapshot | None":
        try:
            form, depfile_readers, firsts = marshal.loads(readers)
            if form != FORMAT or len(firsts) != len(pieces):
                return None
            if not all(isinstance(blob, bytes) for _, blob in pieces):
                return None
            return cls(tuple(Piece(taken, blob) for taken, blob in pieces), depfile_readers,
                       firsts)
        except (EOFError, ValueError, TypeError):
            return None

    def timed_entries(self) -> dict[str, tuple[Entry, int]]:
        """Each path's entry and the time of the piece that holds it."""
        return {entry[0]: (entry, piece.taken_ns)
                for piece in self.pieces for entry in piece.entries}


class Freshness(NamedTuple):
    """The one answer the rest of the engine needs: which jobs can be stale."""

    dirty: list[int] | None         # None: unknown (no snapshot), decide every job;
                                    # []: nothing changed; else these jobs, in plan order
    snapshot: Snapshot | None = None
    changed: set[str] = set()       # the snapshot's files that changed since
    verified: dict[int, int] = {}   # pieces whose fresh entries proved unchanged (retime)


def freshness(plan: Plan, stored: tuple[bytes, list[tuple[int, bytes]]] | None,
              project_dir: str, seen: Seen | None = None) -> Freshness:
    """Compare the stored snapshot of `plan` (state.uptodate) with the files now, or as
    `seen` found them."""
    snapshot = Snapshot.decode(*stored) if stored else None
    if snapshot is None:
        return Freshness(None)
    try:
        changed, verified = changed_files(snapshot, project_dir, seen)
    except (EOFError, ValueError, TypeError):      # a piece that does not decode
        return Freshness(None)
    if not changed:
        return Freshness([], snapshot, changed, verified)
    touched = {target for path in changed for target in snapshot.depfile_readers.get(path, ())
               if target in plan.producers}
    return Freshness(dirty_jobs(plan, changed, touched), snapshot, changed, verified)


def dirty_jobs(plan: Plan, changed: set[str], touched: set[str]) -> list[int]:
    """The jobs (indices, in dependency order) that a change to the files `changed` can
    make stale, with the jobs in `touched` (their depfiles listed a changed file) and every
    `always` job: those, and everything downstream of them. Proportional to the answer.

    Downstream includes the jobs that only wait for a dirty job (order-only): what it
    makes may be a header their depfiles list, which changes only once it has run."""
    index = plan.index
    seeds = {reader for path in changed for reader in index.readers.get(path, ())}
    seeds.update(plan.index_of(target) for target in touched)
    seeds.update(index.always)
    dirty, frontier = set(seeds), list(seeds)
    while frontier:
        for dependent in index.dependents[frontier.pop()]:
            if dependent not in dirty:
                dirty.add(dependent)
                frontier.append(dependent)
    return sorted(dirty)


def changed_files(snapshot: Snapshot, project_dir: str, seen: Seen | None = None
                  ) -> tuple[set[str], dict[int, int]]:
    """The snapshot's files that differ now (or are gone), and the pieces whose too-fresh
    entries all proved unchanged by content, with the time to store for them.

    A file in `seen` is judged by the stat kept there, not stat'ed again."""
    changed: set[str] = set()
    verified: dict[int, int] = {}
    stats = seen.stats if seen is not None else {}
    directory = os.open(project_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for number, piece in enumerate(snapshot.pieces):
            checked_ns = time.time_ns()
            if seen is not None:        # some stats were taken before now
                checked_ns = min(checked_ns, seen.looked_ns)
            if _changed_in(piece, directory, project_dir, changed, stats):
                verified[number] = checked_ns
    finally:
        os.close(directory)
    if changed:
        return changed, {}
    return changed, verified


def _changed_in(piece: Piece, directory: int, project_dir: str, changed: set[str],
                seen: Mapping[str, bytes]) -> bool:
    """Add the piece's changed files to `changed`; True if some entry needed its content
    read to be trusted."""
    columns = piece.columns()
    racy_before = piece.taken_ns - RACY_WINDOW_NS
    # The common case in one comparison: no entry too fresh to trust by stat, and the
    # stats now, packed as stored, equal the stored ones byte for byte. Each stat packs
    # to a fixed width, one way, so that is each entry's stat equal to its own.
    if columns.newest_ns < racy_before \
            and _stats_now(columns.paths, seen, directory) == columns.stats:
        return False
    return _changed_entries(columns.entries(), racy_before, directory, project_dir,
                            changed, seen)


def _stats_now(paths: tuple[str, ...], seen: Mapping[str, bytes], directory: int
               ) -> bytes | None:
    """The stats of `paths` packed as `Piece.of` stores them, each taken from `seen` or
    else stat'ed now; None if some file cannot be stat'ed or its stat does not pack."""
    try:
        return b"".join(map(seen.__getitem__, paths))   # all seen (sources): no loop
    except KeyError:
        pass
    stat, pack, get = os.stat, SEEN.pack, seen.get
    packed = []
    try:
        for path in paths:
            earlier = get(path)
            if earlier is None:
                # not `seen_stat` nor a call of os.stat through map(): each would cost a
                # fifth of the stat itself, with 100,000 outputs to stat
                now = stat(path, dir_fd=directory)
                earlier = pack(now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns,
                               now.st_ctime_ns)
            packed.append(earlier)
    except (OSError, struct.error):
        return None
    return b"".join(packed)


def _changed_entries(entries: tuple[Entry, ...], racy_before: int, directory: int,
                     project_dir: str, changed: set[str], seen: Mapping[str, bytes]) -> bool:
    """`_changed_in` one entry at a time: which changed, and the content of each entry
    too fresh to trust by stat read again."""
    stat = os.stat
    unpack = SEEN.unpack
    verified = False
    for path, dev, ino, size, mtime_ns, ctime_ns, digest in entries:
        earlier = seen.get(path)
        if earlier is not None:
            if unpack(earlier) != (dev, ino, size, mtime_ns, ctime_ns):
                changed.add(path)
                continue
        else:
            try:
                now = stat(path, dir_fd=directory)
            except OSError:
                changed.add(path)
                continue
            if now.st_mtime_ns != mtime_ns or now.st_ctime_ns != ctime_ns \
                    or now.st_size != size or now.st_ino != ino or now.st_dev != dev:
                changed.add(path)
                continue
        if ctime_ns >= racy_before or mtime_ns >= racy_before:
            verified = True
            if _digest_at(project_dir, path) != digest:
                changed.add(path)
    return verified


def _digest_at(project_dir: str, path: str) -> str | None:
    try:
        return digest_file(os.path.join(project_dir, path))
    except OSError:
        return None


def capture(paths: list[str], fresh: Mapping[str, StatMemo], memo_of: MemoOf,
            previous: Snapshot | None, changed: set[str],
            depfile_readers: dict[str, tuple[str, ...]], now_ns: int
            ) -> tuple[Snapshot, range] | None:
    """A snapshot of `paths` and the numbers of its pieces to store (all: every piece is
    new), or None if some path has no known stat and digest.

    `fresh`: files hashed during this build; `previous`: the last snapshot, whose
    entries are good for files not changed since; `memo_of(path)`: the digest memo.
    A piece is timed no later than `now_ns`, nor than the moment the digest of any of
    its entries was read if the file was modified within the racy window before that
    moment: such an entry is then read again by the next check, however long ago the
    build ended, and an entry from an earlier build keeps the guard it had then."""
    known = previous.timed_entries() if previous is not None else {}
    timed: list[tuple[Entry, int]] = []
    for path in paths:
        found = _timed(path, fresh.get(path))
        if found is None and path not in changed:
            found = known.get(path)
        if found is None:
            found = _timed(path, memo_of(path))
        if found is None:
            return None
        timed.append(found)
    timed.sort(key=lambda pair: pair[0][0])
    cuts = range(0, len(timed), PIECE_SIZE)
    pieces = tuple(_piece(timed[start:start + PIECE_SIZE], now_ns) for start in cuts)
    return Snapshot(pieces, depfile_readers, tuple(timed[start][0][0] for start in cuts)), \
        range(len(pieces))


def _piece(timed: list[tuple[Entry, int]], latest_ns: int) -> Piece:
    """A piece of these entries, each with the moment its digest was read, timed no
    later than `latest_ns` nor than the reading of any entry too fresh to trust then."""
    taken_ns = latest_ns
    for entry, read_ns in timed:
        if read_ns < taken_ns and max(entry[4], entry[5]) >= read_ns - RACY_WINDOW_NS:
            taken_ns = read_ns
    return Piece.of(taken_ns, tuple(entry for entry, _ in timed))


def renew(previous: Snapshot, fresh: Mapping[str, StatMemo], memo_of: MemoOf, changed: set[str],
          depfile_readers: dict[str, tuple[str, ...]]) -> tuple[Snapshot, set[int]] | None:
    """The same files as `previous`, with new entries for those this build hashed or saw
    change; also the numbers of the pieces that hold them, the only ones to store.

    A rewritten piece keeps its old time, or an earlier one if a new entry's digest was
    read before it (one from the digest memo of an earlier build): its new entries are
    then checked by content once more on the next build, which is what their fresh
    mtimes would ask anyway."""
    renewed: dict[str, tuple[Entry, int]] = {}
    for path in changed.union(fresh):
        found = _timed(path, fresh.get(path)) or _timed(path, memo_of(path))
        if found is None:
            return None
        renewed[path] = found
    pieces = list(previous.pieces)
    touched: set[int] = set()
    for number in {bisect_right(previous.firsts, path) - 1 for path in renewed}:
        if number < 0:              # before the first path: in no piece
            continue
        piece = pieces[number]
        timed = [renewed.get(entry[0], (entry, piece.taken_ns)) for entry in piece.entries]
        if any(entry[0] in renewed for entry, _ in timed):
            pieces[number] = _piece(timed, piece.taken_ns)
            touched.add(number)
    return Snapshot(tuple(pieces), depfile_readers, previous.firsts), touched


def _timed(path: str, memo: StatMemo | None) -> tuple[Entry, int] | None:
    """The snapshot entry of a memo, and the moment its digest was read."""
    if memo is None:
        return None
    return ((path, memo.dev, memo.ino, memo.size, memo.mtime_ns, memo.ctime_ns, memo.digest),
            memo.hashed_ns)
