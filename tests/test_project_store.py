"""The project's own store (cache/projectstore.py): action records and small blobs in
.rlmake/cache/store.db, larger blobs as files, and a store of the older layout (a file
per entry) still restored from and collected. In-process, with real files."""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import storekit
from engine import Engine

from rlmake.cache import housekeeping
from rlmake.cache.housekeeping import BLOB, RECORD, Limits
from rlmake.cache.local import LocalStore
from rlmake.cache.projectstore import DATABASE_NAME, SMALL_BLOB_BYTES, ProjectStore
from rlmake.hashing import digest_bytes
from rlmake.project import Project

RULES = """\
rules:
  all: {deps: [small.out, big.out]}
  small.out: {deps: [small.txt], command: cp small.txt small.out}
  big.out: {deps: [big.txt], command: cp big.txt big.out}
"""
SMALL = b"small\n"
BIG = b"b" * (SMALL_BLOB_BYTES + 1)


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path / "proj")
    engine.write("Rulesfile.yaml", RULES)
    (engine.root / "small.txt").write_bytes(SMALL)
    (engine.root / "big.txt").write_bytes(BIG)
    return engine


def store_of(engine: Engine) -> Path:
    return engine.root / ".rlmake" / "cache"


def files_under(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.rglob("*") if path.is_file())


def remove_outputs(engine: Engine) -> None:
    for name in ("small.out", "big.out"):
        (engine.root / name).unlink()


def test_records_and_small_blobs_go_to_the_database_large_blobs_to_files(engine):
    assert sorted(engine.build(local_cache=True).ran) == ["big.out", "small.out"]
    store = store_of(engine)
    assert not (store / "ac").exists()
    assert len(storekit.records(store)) == 2
    assert storekit.entries(store, BLOB) == {digest_bytes(SMALL): SMALL,
                                             digest_bytes(BIG): BIG}
    assert files_under(store / "cas") == [digest_bytes(BIG)]
    remove_outputs(engine)
    built = engine.build(local_cache=True)
    assert built.ran == [] and built.warnings == []
    assert (engine.root / "small.out").read_bytes() == SMALL
    assert (engine.root / "big.out").read_bytes() == BIG


def test_a_store_of_the_older_layout_is_restored_from_and_collected(engine):
    engine.build(local_cache=True)
    store = store_of(engine)
    older = LocalStore(str(store))          # the same entries, a file each
    for key, data in storekit.entries(store, RECORD).items():
        older.put_action(key, data)
    for digest, data in storekit.entries(store, BLOB).items():
        source = engine.root / "blob.tmp"
        source.write_bytes(data)
        older.put_blob(digest, str(source))
        source.unlink()
    os.unlink(store / DATABASE_NAME)
    remove_outputs(engine)
    built = engine.build(local_cache=True)
    assert built.ran == [] and built.warnings == []
    assert (engine.root / "small.out").read_bytes() == SMALL
    collected = Project(str(engine.root)).collect_garbage(Limits(max_bytes=0))
    assert collected.removed.total_count == 4       # two records, two blobs: all files
    assert files_under(store / "ac") == files_under(store / "cas") == []


def test_a_damaged_database_costs_the_cache_not_the_build(engine):
    engine.build(local_cache=True)
    database = store_of(engine) / DATABASE_NAME
    database.write_bytes(b"this is not an SQLite database\n" * 200)
    remove_outputs(engine)
    built = engine.build(local_cache=True)
    assert built.status == "ok" and sorted(built.ran) == ["big.out", "small.out"]
    [warning] = built.warnings
    assert str(database) in warning and "move it aside" in warning, warning


def test_lookups_from_several_threads_share_one_database(tmp_path):
    store = ProjectStore(str(tmp_path / "store"))
    keys = [f"{n:064x}" for n in range(64)]
    for key in keys:
        store.put_action(key, key.encode())
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(store.get_action, keys * 4))
    assert found == [key.encode() for key in keys * 4]


def test_a_collection_gives_the_space_back(tmp_path):
    store = ProjectStore(str(tmp_path / "store"))
    for n in range(40):
        source = tmp_path / "source"
        source.write_bytes(bytes([n]) * (60 * 1024))
        store.put_blob(f"{n:064x}", str(source))
    store.close()
    database = tmp_path / "store" / DATABASE_NAME
    assert database.stat().st_size > 2_000_000
    collected = housekeeping.collect(store, Limits(max_bytes=0), now=0.0)
    assert collected.removed.total_count == 40 and list(store.entries()) == []
    store.close()
    assert database.stat().st_size < 200_000


def test_an_entry_is_marked_used_by_each_hit(tmp_path):
    store = ProjectStore(str(tmp_path / "store"))
    store.put_action("ab" * 32, b"record")
    store.close()                   # a build's writes are committed when it closes the store
    storekit.set_last_used(Path(store.root), RECORD, "ab" * 32, 1000.0)
    assert [entry.last_used for entry in store.entries()] == [1000.0]
    assert store.get_action("ab" * 32) == b"record"
    [entry] = store.entries()
    assert entry.last_used > 1000.0


def test_a_store_that_failed_mid_build_still_lets_go_of_its_database(tmp_path, monkeypatch):
    """A watching rlmake builds again in the same process: the database must not stay
    locked by the writes of a build whose store failed."""
    from rlmake.cache.artifacts import ArtifactCache, StoreUse
    from rlmake.state import StoreDB

    (tmp_path / "out").write_bytes(b"out\n")
    store = ProjectStore(str(tmp_path / "store"))
    warnings: list[str] = []
    cache = ArtifactCache([StoreUse(store, writable=True, shared=False)], str(tmp_path),
                          warnings.append)
    cache.store("ab" * 32, [("out", digest_bytes(b"out\n"))], b"", {})
    assert cache.store_one()                    # a write transaction is open now
    real_put = StoreDB.put

    def failing_put(self, *args):
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(StoreDB, "put", failing_put)
    cache.store("cd" * 32, [("out", digest_bytes(b"out\n"))], b"", {})
    cache.close()
    monkeypatch.setattr(StoreDB, "put", real_put)
    assert any("disk I/O error" in warning for warning in warnings), warnings
    other = sqlite3.connect(str(tmp_path / "store" / DATABASE_NAME), timeout=0)
    other.execute("BEGIN IMMEDIATE")            # "database is locked" if it were held
    other.rollback()
    other.close()
