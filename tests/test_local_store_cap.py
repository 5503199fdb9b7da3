"""The local store's size cap (cache/cap.py) and how it stores blobs (cache/local.py):
least recently used out first, after a build that stored something, walking the store
only when its running estimate passes the cap; blobs are copies, never links to an
output a later command may rewrite in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import write_project
from engine import Recording
from fakes import FakeClock, FakeExecutor

from rlmake.cache import cap
from rlmake.cache.local import LocalStore
from rlmake.cache.projectstore import ProjectStore
from rlmake.cache.settings import DEFAULT_MAX_BYTES, CacheSettings
from rlmake.config import load_config
from rlmake.errors import UsageError
from rlmake.model import BuildOptions
from rlmake.project import Project

KEY = "ab" * 32


def digest(n: int) -> str:
    return f"{n:064x}"


class Walks(LocalStore):
    """A LocalStore that counts its walks."""

    walked = 0

    def entries(self):
        self.walked += 1
        return super().entries()


def fill(store: LocalStore, tmp_path: Path, count: int, size: int) -> list[str]:
    """`count` blobs of `size` bytes, the first least recently used; their digests."""
    digests = []
    for n in range(count):
        source = tmp_path / f"source-{n}"
        source.write_bytes(bytes([n]) * size)
        store.put_blob(digest(n), str(source))
        path = store._path("cas", digest(n))
        os.utime(path, (1000 + n, 1000 + n))
        digests.append(digest(n))
    return digests


def test_over_the_cap_the_least_recently_used_go_down_to_four_fifths(tmp_path):
    store = Walks(str(tmp_path / "store"), max_bytes=1000)
    digests = fill(store, tmp_path, 10, 200)       # 2,000 bytes, twice the cap
    cap.keep_under(store, 1000, store.bytes_written)
    left = sorted(entry.key for entry in store.entries())
    assert left == digests[-4:]                     # 800 bytes: the four used last
    assert cap.read_estimate(store.root) == 800


def test_under_the_cap_the_store_is_not_walked_once_its_size_is_known(tmp_path):
    store = Walks(str(tmp_path / "store"), max_bytes=10_000)
    fill(store, tmp_path, 3, 100)
    cap.keep_under(store, 10_000, store.bytes_written)
    assert store.walked == 1                        # no estimate yet: measured once
    assert cap.read_estimate(store.root) == 300
    fill(store, tmp_path, 5, 100)                   # the same three, and two new ones
    cap.keep_under(store, 10_000, 200)
    assert store.walked == 1
    assert cap.read_estimate(store.root) == 500


def test_a_store_over_its_cap_by_the_estimate_is_walked_and_counted_again(tmp_path):
    store = Walks(str(tmp_path / "store"))
    fill(store, tmp_path, 2, 100)
    cap.write_estimate(store.root, 5000)            # an estimate that erred upwards
    assert cap.keep_under(store, 1000, 0) is not None
    assert [entry.key for entry in store.entries()] == [digest(0), digest(1)]
    assert cap.read_estimate(store.root) == 200


def test_a_blob_stored_again_is_touched_so_the_cap_keeps_it(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    fill(store, tmp_path, 3, 100)
    assert store.has_blob(digest(0))                # asked before storing a record naming it
    assert not store.has_blob(digest(9))
    cap.keep_under(store, 250, 0)                   # room for two of the three
    assert sorted(entry.key for entry in store.entries()) == [digest(0), digest(2)]


def test_a_blob_is_a_copy_not_a_link_to_the_output(tmp_path):
    """A command that rewrites its output in place must not change what the store holds."""
    store = LocalStore(str(tmp_path / "store"))
    output = tmp_path / "out.bin"
    output.write_bytes(b"first version\n")
    store.put_blob(digest(1), str(output))
    blob = Path(store._path("cas", digest(1)))
    assert blob.stat().st_ino != output.stat().st_ino
    with open(output, "r+b") as stream:             # rewritten in place, same inode
        stream.write(b"SECOND")
    assert blob.read_bytes() == b"first version\n"
    restored = tmp_path / "restored"
    assert store.fetch_blob(digest(1), str(restored))
    assert restored.read_bytes() == b"first version\n"
    assert restored.stat().st_ino != blob.stat().st_ino


def test_large_and_empty_blobs_are_copied_whole(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    for n, data in enumerate([b"", os.urandom(3 << 20) + b"tail"]):
        source = tmp_path / f"s{n}"
        source.write_bytes(data)
        store.put_blob(digest(n), str(source))
        assert Path(store._path("cas", digest(n))).read_bytes() == data
    assert store.bytes_written == 3 * (1 << 20) + 4


RULES = """
rules:
  all: {deps: [a.out, b.out, c.out]}
  a.out: {deps: [a.txt], command: cp a.txt a.out}
  b.out: {deps: [b.txt], command: cp b.txt b.out}
  c.out: {deps: [c.txt], command: cp c.txt c.out}
"""


def build(root: Path) -> Recording:
    clock = FakeClock()
    project = Project(str(root))
    reporter = Recording()
    project.build([], project.build_config(BuildOptions(jobs=1)), reporter,
                  executor=FakeExecutor(clock), clock=clock)
    return reporter


def test_a_build_keeps_the_projects_store_under_its_cap(tmp_path):
    sizes = {"a.txt": 3000, "b.txt": 3000, "c.txt": 3000}
    root = write_project(tmp_path, RULES, {name: "x" * size for name, size in sizes.items()})
    (root / "rlmake.toml").write_text('[cache]\nlocal_max_size = "5K"\n')
    reporter = build(root)
    assert reporter.warnings == []
    store = ProjectStore(str(root / ".rlmake" / "cache"))
    held = sum(entry.size for entry in store.entries())
    assert 0 < held <= 5 * 1024 * cap.KEEP_FRACTION
    assert cap.read_estimate(store.root) == held


def test_the_cap_defaults_to_two_gib_and_rlmake_toml_sets_it(tmp_path):
    assert CacheSettings.resolve(load_config(str(tmp_path))).local_max_size == DEFAULT_MAX_BYTES
    assert DEFAULT_MAX_BYTES == 2 << 30
    (tmp_path / "rlmake.toml").write_text('[cache]\nlocal_max_size = "5G"\n')
    assert CacheSettings.resolve(load_config(str(tmp_path))).local_max_size == 5 << 30


@pytest.mark.parametrize("value, message", [
    ('"lots"', "rlmake.toml: [cache] local_max_size: bad size 'lots'"),
    ("5", "rlmake.toml: [cache] local_max_size must be a string in quotes, not 5"),
])
def test_a_bad_cap_is_a_usage_error_naming_the_setting(tmp_path, value, message):
    (tmp_path / "rlmake.toml").write_text(f"[cache]\nlocal_max_size = {value}\n")
    with pytest.raises(UsageError) as raised:
        CacheSettings.resolve(load_config(str(tmp_path)))
    assert str(raised.value).startswith(message)
    assert raised.value.exit_code == 2
