"""An edit that keeps a file's size and puts its mtime back (os.utime, `touch -r`, tar,
rsync -t) leaves dev, inode, size and mtime as they were; only the ctime moves. The
digest memo (hashing.py, state.py's file_memo) and the up-to-date snapshot (uptodate.py)
must both see it.

Both trust a stat only for a file last changed well before it was hashed; the tests
play "time has passed" by moving the moment of hashing into the future instead of
waiting for the clock.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from conftest import run_subprocess, write_project
from rlmake.hashing import FileHasher, digest_file
from rlmake.state import MIGRATIONS, StateDB
from rlmake.uptodate import capture, changed_files

LATER_NS = 10_000_000_000           # "hashed ten seconds later"
COPY = """
    rules:
      out.txt: {deps: [in.txt], command: "cp in.txt out.txt && echo ran >> log.txt"}
    """


def rewrite_keeping_mtime(path, content: str) -> None:
    """Rewrite `path` in place and put its mtime back, until the kernel has moved its ctime
    on (two writes within one timestamp tick share a ctime)."""
    before = os.stat(path)
    deadline = time.monotonic() + 5
    while True:
        with open(path, "r+") as stream:
            stream.write(content)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        now = os.stat(path)
        if now.st_ctime_ns != before.st_ctime_ns:
            break
        assert time.monotonic() < deadline, "the ctime never moved"
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)


# --- end to end ----------------------------------------------------------------------

@pytest.mark.integration
def test_a_same_size_edit_with_the_mtime_put_back_is_rebuilt(tmp_path):
    write_project(tmp_path, COPY, {"in.txt": "aaaa"})
    for _ in range(2):                          # the second: up to date, snapshot stored
        result = run_subprocess(["build", "--no-local-cache"], cwd=tmp_path)
        assert result.exit_code == 0, result.describe()
    with sqlite3.connect(tmp_path / ".rlmake" / "state.db") as db:
        assert db.execute("SELECT count(*) FROM uptodate_pieces").fetchone()[0] > 0
        db.execute("UPDATE file_memo SET hashed_ns = hashed_ns + ?", (LATER_NS,))
        db.execute("UPDATE uptodate_pieces SET taken_ns = taken_ns + ?", (LATER_NS,))
    rewrite_keeping_mtime(tmp_path / "in.txt", "bbbb")
    result = run_subprocess(["build", "--no-local-cache"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert (tmp_path / "out.txt").read_text() == "bbbb", result.describe()
    assert (tmp_path / "log.txt").read_text() == "ran\nran\n"


# --- the memo and the snapshot, each alone -----------------------------------------------

def test_the_memo_does_not_match_once_the_ctime_moved(tmp_path):
    (tmp_path / "in.txt").write_text("aaaa")
    hasher = FileHasher(str(tmp_path), {})
    assert hasher.digest("in.txt") == digest_file(str(tmp_path / "in.txt"))
    memo = {path: entry._replace(hashed_ns=entry.hashed_ns + LATER_NS)
            for path, entry in hasher.updated.items()}
    assert FileHasher(str(tmp_path), dict(memo)).digest("in.txt") == memo["in.txt"].digest
    rewrite_keeping_mtime(tmp_path / "in.txt", "bbbb")
    assert FileHasher(str(tmp_path), memo).digest("in.txt") == \
        digest_file(str(tmp_path / "in.txt"))


def test_the_snapshot_sees_a_moved_ctime(tmp_path):
    (tmp_path / "in.txt").write_text("aaaa")
    hasher = FileHasher(str(tmp_path), {})
    hasher.digest("in.txt")
    hashed_later = {path: entry._replace(hashed_ns=entry.hashed_ns + LATER_NS)
                    for path, entry in hasher.updated.items()}
    snapshot, _ = capture(["in.txt"], hashed_later, hasher.memo.get, None, set(), {},
                          time.time_ns() + LATER_NS)
    assert changed_files(snapshot, str(tmp_path)) == (set(), {})
    rewrite_keeping_mtime(tmp_path / "in.txt", "bbbb")
    assert changed_files(snapshot, str(tmp_path))[0] == {"in.txt"}


def test_memo_entries_from_before_the_ctime_are_hashed_again(tmp_path):
    (tmp_path / "in.txt").write_text("aaaa")
    stat = os.stat(tmp_path / "in.txt")
    state_dir = tmp_path / ".rlmake"
    state_dir.mkdir()
    with sqlite3.connect(state_dir / "state.db") as db:   # a database of schema 4
        for migration in MIGRATIONS[:4]:
            db.executescript(migration)
        db.execute("PRAGMA user_version = 4")
        db.execute("INSERT INTO file_memo VALUES ('in.txt', ?, ?, ?, ?, 'stale', ?)",
                   (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
                    time.time_ns() + LATER_NS))
    state = StateDB(str(state_dir))
    try:
        memo = state.stat_memo()
        assert memo["in.txt"].ctime_ns == 0
        assert FileHasher(str(tmp_path), memo).digest("in.txt") == \
            digest_file(str(tmp_path / "in.txt"))
        state.save_stat_memo({"in.txt": memo["in.txt"]._replace(ctime_ns=7)})
        state.commit()
        assert state.stat_memo_of("in.txt").ctime_ns == 7
    finally:
        state.close()
