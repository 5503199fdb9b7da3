"""What a successful job puts in the project's own store (ProjectStore.keep_blob): a small
blob is read once and stored only if its bytes are those its digest names, so an output
rewritten between the job and the (deferred) write stores nothing rather than a blob
every restore would refuse; a blob the store has is marked used and not written again;
a store with entries of the older layout still finds its blobs among the files. And the
record is the bytes json.dumps(record, sort_keys=True) gave. In-process, real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import storekit

from rlmake.cache import artifacts, projectstore
from rlmake.cache.artifacts import ArtifactCache, StoreUse
from rlmake.cache.housekeeping import BLOB, RECORD
from rlmake.cache.local import LocalStore
from rlmake.cache.projectstore import SMALL_BLOB_BYTES, ProjectStore
from rlmake.hashing import digest_bytes

KEY = "ab" * 20
FIRST = b"what the job wrote\n"


def cache_in(project: Path, warnings: list[str]) -> tuple[ArtifactCache, ProjectStore]:
    store = ProjectStore(str(project / ".rlmake" / "cache"))
    cache = ArtifactCache([StoreUse(store, writable=True, shared=False)], str(project),
                          warnings.append, execution="e" * 32)
    return cache, store


def test_an_output_rewritten_before_the_write_stores_nothing(tmp_path):
    (tmp_path / "out").write_bytes(FIRST)
    warnings: list[str] = []
    cache, store = cache_in(tmp_path, warnings)
    cache.store(KEY, [("out", digest_bytes(FIRST))], b"", {})
    (tmp_path / "out").write_bytes(b"what something else wrote later\n")
    assert cache.store_one()
    cache.close()
    cache_root = Path(store.root)
    assert storekit.entries(cache_root, BLOB) == {}
    assert storekit.entries(cache_root, RECORD) == {}      # no record naming a bad blob
    # so a lookup is a plain miss, not a refusal with a warning
    (tmp_path / "out").unlink()
    again, _ = cache_in(tmp_path, warnings)
    assert again.restore(KEY, ("out",)) is None
    again.close()
    assert warnings == [] and again.stats.refused == 0 and again.stats.misses == 1


LARGE = b"L" * (SMALL_BLOB_BYTES + 1)


@pytest.mark.parametrize("made, rewritten", [
    (FIRST, LARGE + b"rewritten\n"),           # hashed small, rewritten large
    (LARGE, LARGE + b"rewritten\n"),           # large both times
    (LARGE, FIRST),                             # hashed large, rewritten small
], ids=["small-to-large", "large-to-large", "large-to-small"])
def test_an_output_rewritten_at_any_size_stores_nothing(tmp_path, made, rewritten):
    """A larger blob is copied into cas/, and the copy checked before it takes its name:
    whatever sizes the output had when hashed and when stored, no file in the store is
    named by a digest of other bytes, and no record is written."""
    (tmp_path / "out").write_bytes(made)
    cache, store = cache_in(tmp_path, [])
    cache.store(KEY, [("out", digest_bytes(made))], b"", {})
    (tmp_path / "out").write_bytes(rewritten)
    assert cache.store_one()
    cache.close()
    assert storekit.entries(Path(store.root), BLOB) == {}
    assert storekit.entries(Path(store.root), RECORD) == {}
    assert cache.stats.bytes_stored == 0
    leftovers = [p for p in Path(store.root).rglob("*") if p.is_file() and p.name != "store.db"
                 and not p.name.startswith("store.db-")]
    assert leftovers == []                  # nor a temporary copy


def test_a_large_output_that_holds_its_bytes_is_stored(tmp_path):
    (tmp_path / "out").write_bytes(LARGE)
    cache, store = cache_in(tmp_path, [])
    cache.store(KEY, [("out", digest_bytes(LARGE))], b"", {})
    assert cache.store_one()
    cache.close()
    assert storekit.entries(Path(store.root), BLOB) == {digest_bytes(LARGE): LARGE}
    assert cache.stats.bytes_stored == len(LARGE)


def test_every_stored_blob_holds_the_bytes_its_digest_names(tmp_path):
    outputs = {f"out{n}": bytes([n]) * (n * 997 % SMALL_BLOB_BYTES) for n in range(1, 12)}
    outputs["empty"] = b""
    outputs["limit"] = b"x" * SMALL_BLOB_BYTES
    for name, data in outputs.items():
        (tmp_path / name).write_bytes(data)
    warnings: list[str] = []
    cache, store = cache_in(tmp_path, warnings)
    for n, (name, data) in enumerate(outputs.items()):
        cache.store(f"{n:040x}", [(name, digest_bytes(data))], b"", {})
    cache.close()
    blobs = storekit.entries(Path(store.root), BLOB)
    assert sorted(blobs) == sorted(digest_bytes(data) for data in outputs.values())
    assert all(digest_bytes(data) == digest for digest, data in blobs.items())
    assert cache.stats.bytes_stored == sum(map(len, outputs.values())) and warnings == []


def test_a_short_read_is_read_on_to_the_end(tmp_path, monkeypatch):
    data = b"0123456789" * 1000
    (tmp_path / "out").write_bytes(data)
    real_read = os.read
    monkeypatch.setattr(projectstore.os, "read", lambda fd, n: real_read(fd, min(n, 4096)))
    cache, store = cache_in(tmp_path, [])
    cache.store(KEY, [("out", digest_bytes(data))], b"", {})
    cache.close()
    assert storekit.entries(Path(store.root), BLOB) == {digest_bytes(data): data}


def stored_first(project: Path) -> Path:
    """The project's store after a build that stored `out` holding FIRST under KEY."""
    (project / "out").write_bytes(FIRST)
    cache, store = cache_in(project, [])
    cache.store(KEY, [("out", digest_bytes(FIRST))], b"", {})
    cache.close()
    return Path(store.root)


def test_a_blob_the_store_has_is_marked_used_not_written_again(tmp_path):
    cache_root = stored_first(tmp_path)
    storekit.set_last_used(cache_root, BLOB, digest_bytes(FIRST), 1000.0)
    again, store = cache_in(tmp_path, [])
    again.store("cd" * 20, [("out", digest_bytes(FIRST))], b"", {})
    again.close()
    assert again.stats.bytes_stored == 0
    [blob] = [entry for entry in store.entries() if entry.kind == BLOB]
    assert blob.last_used > 1000.0
    assert len(storekit.entries(cache_root, RECORD)) == 2


def test_a_blob_of_the_older_layout_is_found_among_the_files(tmp_path):
    (tmp_path / "out").write_bytes(FIRST)
    cache_root = tmp_path / ".rlmake" / "cache"
    older = LocalStore(str(cache_root))         # as an older rlmake left it: a file each
    older.put_action("ef" * 20, b"{}")
    older.put_blob(digest_bytes(FIRST), str(tmp_path / "out"))
    os.utime(older._path("cas", digest_bytes(FIRST)), (1000.0, 1000.0))
    cache, store = cache_in(tmp_path, [])
    cache.store(KEY, [("out", digest_bytes(FIRST))], b"", {})
    cache.close()
    assert cache.stats.bytes_stored == 0
    blobs = [entry for entry in store.entries() if entry.kind == BLOB]
    assert len(blobs) == 1 and blobs[0].last_used > 1000.0      # touched, not copied
    (tmp_path / "out").unlink()
    again, _ = cache_in(tmp_path, [])
    assert again.restore(KEY, ("out",)) is not None
    assert (tmp_path / "out").read_bytes() == FIRST


def test_a_blob_found_corrupt_is_written_again(tmp_path):
    cache_root = stored_first(tmp_path)
    storekit.put(cache_root, BLOB, digest_bytes(FIRST), b"flipped bits\n")
    warnings: list[str] = []
    again, _ = cache_in(tmp_path, warnings)
    (tmp_path / "out").unlink()
    assert again.restore(KEY, ("out",)) is None and again.stats.refused == 1
    (tmp_path / "out").write_bytes(FIRST)           # the job ran again
    again.store(KEY, [("out", digest_bytes(FIRST))], b"", {})
    again.close()
    assert storekit.entries(cache_root, BLOB) == {digest_bytes(FIRST): FIRST}


def test_a_record_is_written_as_json_dumps_with_sorted_keys_wrote_it(tmp_path):
    (tmp_path / "out").write_bytes(FIRST)
    (tmp_path / "out2").write_bytes(b"two\n")
    cache, store = cache_in(tmp_path, [])
    cache.store(KEY, [("out", digest_bytes(FIRST))], "ünï\x1b".encode(), {"dep": None})
    cache.store("cd" * 20, [("out2", digest_bytes(b"two\n"))], b"", {})
    cache.close()
    stored = storekit.entries(Path(store.root), RECORD)
    for data in stored.values():
        assert data == json.dumps(json.loads(data), sort_keys=True).encode()
    first, second = (json.loads(stored[key]) for key in (KEY, "cd" * 20))
    assert first["stored_by"] == second["stored_by"] == artifacts._this_build("e" * 32)
    assert first["depfile_deps"] == {"dep": None} and first["output"] == "ünï\x1b"
