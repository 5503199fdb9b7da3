"""After an edit, the up-to-date snapshot (uptodate.py) is renewed by rewriting the
pieces that hold the files the build hashed: those pieces are found by path, without
decoding the others. In-process, on real files in a temporary directory."""

from __future__ import annotations

import time

from rlmake import uptodate
from rlmake.hashing import FileHasher
from rlmake.uptodate import PIECE_SIZE, Snapshot, capture, changed_files, renew

FILES = 3 * PIECE_SIZE          # three pieces


def snapshot_of(root, names: list[str]) -> tuple[Snapshot, FileHasher]:
    for name in names:
        (root / name).write_text(f"{name}\n")
    hasher = FileHasher(str(root), {})
    for name in names:
        hasher.digest(name)
    taken = capture(names, hasher.updated, hasher.memo.get, None, set(), {}, time.time_ns())
    assert taken is not None
    return taken[0], hasher


def test_entries_are_in_path_order_with_each_pieces_first_path(tmp_path):
    names = [f"f{n:04}.txt" for n in reversed(range(FILES))]    # given in reverse
    snapshot, _ = snapshot_of(tmp_path, names)
    assert [entry[0] for piece in snapshot.pieces for entry in piece.entries] == sorted(names)
    assert snapshot.firsts == tuple(piece.entries[0][0] for piece in snapshot.pieces)
    decoded = Snapshot.decode(snapshot.encode_readers(),
                              list(snapshot.encode_pieces(range(3)).values()))
    assert decoded == snapshot


def test_renewing_after_an_edit_decodes_only_the_piece_that_holds_it(tmp_path, monkeypatch):
    names = [f"f{n:04}.txt" for n in range(FILES)]
    snapshot, _ = snapshot_of(tmp_path, names)
    edited = names[PIECE_SIZE + 7]                              # in the middle piece
    (tmp_path / edited).write_text("edited, longer than before\n")
    hasher = FileHasher(str(tmp_path), {})
    hasher.digest(edited)
    decoded: list[uptodate.Piece] = []
    columns = uptodate.Piece.columns
    monkeypatch.setattr(uptodate.Piece, "columns",
                        lambda piece: decoded.append(piece) or columns(piece))
    renewed = renew(snapshot, hasher.updated, hasher.memo.get, {edited}, {})
    monkeypatch.undo()
    assert renewed is not None
    new, touched = renewed
    assert touched == {1} and decoded == [snapshot.pieces[1]]
    assert new.pieces[0] == snapshot.pieces[0] and new.pieces[2] == snapshot.pieces[2]
    # the renewed snapshot is whole: nothing changed since, and a change anywhere is seen
    assert changed_files(new, str(tmp_path))[0] == set()
    (tmp_path / names[-1]).write_text("changed too, and longer\n")
    assert changed_files(new, str(tmp_path))[0] == {names[-1]}


def test_a_file_in_no_piece_touches_none(tmp_path):
    names = [f"f{n:04}.txt" for n in range(FILES)]
    snapshot, _ = snapshot_of(tmp_path, names)
    for name in ("a-before-all.txt", "f0100.txt.new", "zz-after-all.txt"):
        (tmp_path / name).write_text("x\n")
        hasher = FileHasher(str(tmp_path), {})
        hasher.digest(name)
        renewed = renew(snapshot, hasher.updated, hasher.memo.get, {name}, {})
        assert renewed is not None and renewed[1] == set() and renewed[0] == snapshot
