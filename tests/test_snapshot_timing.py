"""A snapshot piece is timed no later than the moment any of its entries' digests was read.

The up-to-date snapshot trusts an entry by stat only if the file was last modified a
racy window before its piece was taken. A piece made at the end of a build from
digests read earlier (this build's hashes, the digest memo of an earlier build, the
previous snapshot) used to be timed at the end of the build: a file rewritten within
one timestamp tick of its hash (so with the same stat) then looked old enough to
trust, and the next build would have kept an output made from its old bytes. Each
test sets up exactly that: a file whose stat is what the entry says, whose bytes are
not what the entry's digest says, and whose mtime is within the racy window of the
moment the digest was read."""

from __future__ import annotations

import os

from rlmake.hashing import RACY_WINDOW_NS, FileHasher, StatMemo, digest_bytes
from rlmake.uptodate import Piece, Snapshot, capture, changed_files, renew

SECOND = 1_000_000_000


def rewritten_within_a_tick(root, name: str = "in.txt") -> StatMemo:
    """A memo of `name` as if its digest was read just after a first write, the file then
    rewritten in the same tick (same stat, other bytes)."""
    path = root / name
    path.write_bytes(b"new bytes")
    found = os.stat(path)
    return StatMemo(found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns,
                    digest_bytes(b"old bytes"), found.st_mtime_ns + SECOND // 2,
                    found.st_ctime_ns)


def test_a_piece_made_at_the_end_of_a_build_is_timed_when_its_digests_were_read(tmp_path):
    memo = rewritten_within_a_tick(tmp_path)
    later = memo.hashed_ns + 60 * SECOND         # the build ended a minute after the hash
    snapshot, _ = capture(["in.txt"], {"in.txt": memo}, lambda path: None, None, set(), {},
                          later)
    assert [piece.taken_ns for piece in snapshot.pieces] == [memo.hashed_ns]
    changed, _ = changed_files(snapshot, str(tmp_path))
    assert changed == {"in.txt"}


def test_an_entry_old_enough_when_it_was_read_does_not_hold_its_piece_back(tmp_path):
    """Only entries too fresh to trust need the earlier time: a source last changed long
    before it was hashed is trusted by stat from then on."""
    memo = StatMemo(1, 2, 3, 10 * SECOND, digest_bytes(b"a"), 20 * SECOND, 10 * SECOND)
    snapshot, _ = capture(["old.txt"], {"old.txt": memo}, lambda path: None, None, set(), {},
                          80 * SECOND)
    assert [piece.taken_ns for piece in snapshot.pieces] == [80 * SECOND]


def test_an_entry_kept_from_the_previous_snapshot_keeps_its_pieces_time(tmp_path):
    memo = rewritten_within_a_tick(tmp_path)
    (tmp_path / "other.txt").write_bytes(b"other")
    old = Snapshot((Piece.of(memo.hashed_ns, (entry_of("in.txt", memo),)),), {}, ("in.txt",))
    other = FileHasher(str(tmp_path), {})
    other.digest("other.txt")
    later = memo.hashed_ns + 60 * SECOND
    snapshot, _ = capture(["in.txt", "other.txt"], other.updated, lambda path: None, old,
                          set(), {}, later)
    [piece] = snapshot.pieces
    assert piece.taken_ns <= memo.hashed_ns
    assert changed_files(snapshot, str(tmp_path))[0] == {"in.txt"}


def test_a_renewed_piece_is_timed_back_to_an_older_memo(tmp_path):
    memo = rewritten_within_a_tick(tmp_path)
    then = memo.hashed_ns + 60 * SECOND          # the piece was taken long after the hash
    stale = (*entry_of("in.txt", memo)[:6], digest_bytes(b"older still"))
    old = Snapshot((Piece.of(then, (stale,)),), {}, ("in.txt",))
    snapshot, touched = renew(old, {}, {"in.txt": memo}.get, {"in.txt"}, {})
    assert touched == {0}
    assert snapshot.pieces[0].taken_ns == memo.hashed_ns
    assert changed_files(snapshot, str(tmp_path))[0] == {"in.txt"}


def test_a_memo_is_timed_before_its_file_was_read(tmp_path, monkeypatch):
    """A write during a read longer than the racy window must not look old enough."""
    import rlmake.hashing as hashing

    (tmp_path / "big.bin").write_bytes(b"x" * 10)
    now = [100 * SECOND]
    read = hashing.digest_file

    def slow_read(path):
        now[0] += 5 * RACY_WINDOW_NS            # the read takes five racy windows
        return read(path)
    monkeypatch.setattr(hashing.time, "time_ns", lambda: now[0])
    monkeypatch.setattr(hashing, "digest_file", slow_read)
    hasher = FileHasher(str(tmp_path), {})
    hasher.digest("big.bin")
    assert hasher.updated["big.bin"].hashed_ns == 100 * SECOND


def entry_of(path: str, memo: StatMemo):
    return (path, memo.dev, memo.ino, memo.size, memo.mtime_ns, memo.ctime_ns, memo.digest)
