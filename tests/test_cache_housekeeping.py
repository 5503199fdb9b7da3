"""`rlmake cache stats` and `rlmake cache gc` on the project's own store and on a shared
one: figures of each store apart, removal by age and by size, write access required on
a shared store, nothing that is not rlmake's removed, and builds after gc still right.

Stores here are filled by real in-process builds (the real Project, scheduler and
artifact cache; the fake executor of fakes.py runs the commands without a process), and
the commands run through the click group in-process. The S3 tests (moto's server on
127.0.0.1) are in test_cache_housekeeping_s3.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from buildkit import build_env, run_in_process
from conftest import Run, write_project
from engine import Recording
from fakes import FakeClock, FakeExecutor
import storekit

from rlmake.cache import housekeeping
from rlmake.cache.housekeeping import BLOB, RECORD, Entry, Limits
from rlmake.cache.projectstore import ProjectStore
from rlmake.errors import UsageError
from rlmake.model import BuildOptions
from rlmake.project import Project

RULES = """
rules:
  all:
    deps: [a.out, b.out, c.out]
  a.out:
    deps: [a.txt]
    command: cp a.txt a.out
  b.out:
    deps: [b.txt]
    command: cp b.txt b.out
  c.out:
    deps: [c.txt]
    command: cp c.txt c.out
"""
SOURCES = {"a.txt": "alpha\n", "b.txt": "beta beta\n", "c.txt": "gamma gamma gamma\n"}
OUTPUTS = {"a.out": "alpha\n", "b.out": "beta beta\n", "c.out": "gamma gamma gamma\n"}
DAY = 86400.0


def new_project(root: Path) -> Path:
    return write_project(root, RULES, SOURCES)


def build(root: Path, shared: Path | None = None, write: bool = False,
          local: bool = True, outputs: dict[str, str] = OUTPUTS) -> list[str]:
    """A real build of `root` in-process, which must make `outputs`; the targets whose
    commands ran."""
    clock = FakeClock()
    executor = FakeExecutor(clock)
    project = Project(str(root))
    config = project.build_config(BuildOptions(jobs=1), cache_url=str(shared) if shared else None,
                                  cache_write=write, local_cache=local)
    reporter = Recording()
    project.build([], config, reporter, executor=executor, clock=clock)
    # a keyless build warns once that a shared store's records go unchecked: that is all
    assert [text for text in reporter.warnings if "RLMAKE_CACHE_KEY is not set" not in text] == []
    for name, text in outputs.items():
        assert (root / name).read_text() == text, name
    return sorted(executor.ran)


def forget_outputs(root: Path) -> None:
    for name in OUTPUTS:
        (root / name).unlink()


def rlmake(root: Path, *args: str, expect: int = 0, **env: str) -> Run:
    code, stdout, stderr = run_in_process(["-C", str(root), *args], root, build_env(**env))
    result = Run(code, stdout, stderr)
    assert code == expect, result.describe()
    return result


class Stored(NamedTuple):
    kind: str
    name: str
    data: bytes | None          # None: a record names the blob, but the store lacks it


def entries_of(store: Path) -> dict[str, Stored]:
    """{output path: entry} of every record and blob in a store: each record under its
    output's name, each blob under `blob:` and the output's name."""
    found = {}
    blobs = storekit.entries(store, BLOB)
    for key, data in storekit.entries(store, RECORD).items():
        for output in json.loads(data)["outputs"]:
            found[output["path"]] = Stored(RECORD, key, data)
            digest = output["digest"]
            found["blob:" + output["path"]] = Stored(BLOB, digest, blobs.get(digest))
    return found


def set_age(store: Path, entry: Stored, seconds: float) -> None:
    storekit.set_last_used(store, entry.kind, entry.name, time.time() - seconds)


def age_file(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def figure(result: Run, label: str) -> str:
    """The rest of the stats line that starts with `label:` (after its padding)."""
    line = next(line for line in result.lines if line.strip().startswith(label + ":"))
    return line.split(":", 1)[1].strip()


# --- the policy, as pure functions ---------------------------------------------------------

def _entry(kind: str, key: str, size: int, age_days: float, now: float = 100 * DAY) -> Entry:
    return Entry(kind, key, size, now - age_days * DAY)


ENTRIES = [_entry(BLOB, "b1", 100, 40), _entry(RECORD, "r1", 10, 40),
           _entry(BLOB, "b2", 200, 10), _entry(RECORD, "r2", 10, 10),
           _entry(BLOB, "b3", 300, 1), _entry(RECORD, "r3", 10, 1)]


@pytest.mark.parametrize("limits, removed", [
    (Limits(max_age=30 * DAY), ["r1", "b1"]),
    (Limits(max_age=5 * DAY), ["r1", "r2", "b1", "b2"]),
    (Limits(max_age=50 * DAY), []),
    (Limits(max_age=0), ["r1", "r2", "r3", "b1", "b2", "b3"]),
    (Limits(max_bytes=630), []),
    (Limits(max_bytes=620), ["r1"]),
    (Limits(max_bytes=619), ["r1", "b1"]),
    (Limits(max_bytes=320), ["r1", "r2", "b1", "b2"]),
    (Limits(max_bytes=0), ["r1", "r2", "r3", "b1", "b2", "b3"]),
    (Limits(max_age=30 * DAY, max_bytes=520), ["r1", "b1"]),
    (Limits(max_age=30 * DAY, max_bytes=519), ["r1", "r2", "b1"]),
])
def test_gc_selects_the_old_then_the_least_recently_used_records_first(limits, removed):
    chosen = housekeeping.select(ENTRIES, limits, now=100 * DAY)
    assert [entry.key for entry in chosen] == removed


@pytest.mark.parametrize("text, seconds", [("30d", 30 * DAY), ("12h", 12 * 3600.0),
                                           ("90m", 5400.0), ("45s", 45.0), ("2w", 14 * DAY),
                                           ("0s", 0.0), ("1.5d", 1.5 * DAY), (" 7d ", 7 * DAY)])
def test_ages_it_takes(text, seconds):
    assert housekeeping.parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "", "d", "-1d", "1y", "1M", "infd", "nand", "1e400d",
                                  "9" * 400 + "d", "30 days", "1d2h"])
def test_ages_it_refuses(text):
    with pytest.raises(UsageError, match=f"bad age '{text}': use a number with s, m, h, d or w"):
        housekeeping.parse_age(text)


# --- the command line: usage errors ---------------------------------------------------------

def test_gc_needs_an_age_or_a_size(tmp_path):
    root = new_project(tmp_path / "p")
    result = rlmake(root, "cache", "gc", expect=2)
    assert "cache gc needs --max-age AGE, --max-size SIZE or both" in result.stderr
    assert "Traceback" not in result.stderr


def test_gc_refuses_a_bad_age_before_touching_a_store(tmp_path):
    root = new_project(tmp_path / "p")
    build(root)
    before = sorted((root / ".rlmake" / "cache").rglob("*"))
    result = rlmake(root, "cache", "gc", "--max-age", "30", "--max-size", "0", expect=2)
    assert "bad age '30'" in result.stderr
    assert sorted((root / ".rlmake" / "cache").rglob("*")) == before


def test_gc_of_a_shared_store_needs_write_access(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    before = entries_of(shared)
    for args, env in [(["--cache", str(shared)], {}), ([], {"RLMAKE_CACHE": str(shared)}),
                      (["--cache", str(shared)], {"RLMAKE_CACHE_WRITE": "0"})]:
        result = rlmake(root, "cache", "gc", "--max-age", "0s", *args, expect=2, **env)
        assert f"removes entries from the shared store '{shared}'" in result.stderr
        assert "--cache-write" in result.stderr and "RLMAKE_CACHE_WRITE=1" in result.stderr
    assert entries_of(shared) == before
    assert all(entry.data is not None for entry in before.values())


def test_a_shared_directory_that_does_not_exist_is_refused(tmp_path):
    root, typo = new_project(tmp_path / "p"), tmp_path / "shraed"
    for command in (["stats"], ["gc", "--max-age", "0s", "--cache-write"]):
        result = rlmake(root, "cache", *command, "--cache", str(typo), expect=2)
        assert f"no shared store at '{typo}'" in result.stderr
    assert not typo.exists()


def test_local_and_cache_together_are_refused(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    result = rlmake(root, "cache", "gc", "--max-age", "0s", "--local", "--cache", str(shared),
                    expect=2)
    assert "--local and --cache name different stores" in result.stderr


# --- the project's own store ----------------------------------------------------------------

def test_local_gc_by_age_removes_what_was_not_used_and_the_next_build_runs_only_that(tmp_path):
    root = new_project(tmp_path / "p")
    assert build(root) == ["a.out", "b.out", "c.out"]
    store = root / ".rlmake" / "cache"
    for entry in entries_of(store).values():
        set_age(store, entry, 40 * DAY)
    (root / "b.out").unlink()
    assert build(root) == []                    # restored: b's entries are used today
    result = rlmake(root, "cache", "gc", "--max-age", "30d")
    assert len(result.lines) == 1, result.describe()
    assert result.lines[0].startswith(f"local store {store}: removed 4 entries "
                                      "(2 records, 2 blobs), freed ")
    assert "; kept 2 entries, " in result.lines[0]
    assert sorted(entries_of(store)) == ["b.out", "blob:b.out"]
    forget_outputs(root)
    assert build(root) == ["a.out", "c.out"]    # b restored, a and c run again


def test_local_gc_by_size_keeps_the_most_recently_used(tmp_path):
    root = new_project(tmp_path / "p")
    build(root)
    store = root / ".rlmake" / "cache"
    entries = entries_of(store)
    for age, name in ((30, "a.out"), (20, "b.out"), (10, "c.out")):
        set_age(store, entries[name], age * DAY)
        set_age(store, entries["blob:" + name], age * DAY + 1)    # stored before its record
    newest = len(entries["c.out"].data) + len(entries["blob:c.out"].data)
    rlmake(root, "cache", "gc", "--max-size", str(newest))
    assert sorted(entries_of(store)) == ["blob:c.out", "c.out"]
    forget_outputs(root)
    assert build(root) == ["a.out", "b.out"]


def test_dry_run_removes_nothing(tmp_path):
    root = new_project(tmp_path / "p")
    build(root)
    store = root / ".rlmake" / "cache"
    before = entries_of(store)
    result = rlmake(root, "cache", "gc", "--max-size", "0", "--dry-run")
    assert result.stdout.startswith(f"local store {store}: would remove 6 entries "
                                    "(3 records, 3 blobs)")
    assert entries_of(store) == before
    assert all(entry.data is not None for entry in before.values())


def test_a_store_entry_used_after_it_was_listed_is_kept(tmp_path):
    root = new_project(tmp_path / "p")
    build(root)
    store = ProjectStore(str(root / ".rlmake" / "cache"))
    entries = list(store.entries())
    used = entries[0]
    storekit.set_last_used(Path(store.root), used.kind, used.key, used.last_used + 5)
    removed = list(store.remove(entries))
    assert removed == entries[1:]
    assert [entry.key for entry in store.entries()] == [used.key]


# --- a shared directory store ---------------------------------------------------------------

def test_gc_with_cache_acts_on_the_shared_store_only(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    local_before = entries_of(root / ".rlmake" / "cache")
    result = rlmake(root, "cache", "gc", "--cache", str(shared), "--cache-write",
                    "--max-size", "0")
    assert result.lines[0].startswith(f"shared store {shared}: removed 6 entries "
                                      "(3 records, 3 blobs)")
    assert entries_of(shared) == {}
    assert entries_of(root / ".rlmake" / "cache") == local_before
    other = new_project(tmp_path / "other")
    assert build(other, shared, local=False) == ["a.out", "b.out", "c.out"]


def test_gc_by_age_of_a_shared_store_named_by_the_environment(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    entries = entries_of(shared)
    for name in ("a.out", "blob:a.out"):
        set_age(shared, entries[name], 2 * DAY)
    result = rlmake(root, "cache", "gc", "--max-age", "1d",
                    RLMAKE_CACHE=str(shared), RLMAKE_CACHE_WRITE="1")
    assert result.lines[0].startswith(f"shared store {shared}: removed 2 entries "
                                      "(1 record, 1 blob)")
    assert sorted(entries_of(shared)) == ["b.out", "blob:b.out", "blob:c.out", "c.out"]
    other = new_project(tmp_path / "other")
    assert build(other, shared, local=False) == ["a.out"]     # b and c restored


def test_rlmake_toml_names_the_shared_store_and_local_picks_the_projects_own(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    (root / "rlmake.toml").write_text('[cache]\nurl = "../shared"\n')
    refused = rlmake(root, "cache", "gc", "--max-size", "0", expect=2)
    assert "the shared store '../shared'" in refused.stderr and "--local" in refused.stderr
    result = rlmake(root, "cache", "gc", "--max-size", "0", "--local")
    assert result.lines[0].startswith(f"local store {root / '.rlmake' / 'cache'}: removed 6")
    assert entries_of(root / ".rlmake" / "cache") == {}
    assert len(entries_of(shared)) == 6
    stats = rlmake(root, "cache", "stats")
    assert figure(stats, "shared store") == f"6 entries, {_size_of(shared)} in ../shared"


def _size_of(store: Path) -> str:
    total = sum(len(data) for kind in (RECORD, BLOB)
                for data in storekit.entries(store, kind).values())
    return housekeeping.format_size(total)


def test_stats_reports_each_store_apart(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    forget_outputs(root)
    (root / "a.txt").write_text("alpha two\n")
    assert build(root, outputs={**OUTPUTS, "a.out": "alpha two\n"}) == ["a.out"]
    stats = rlmake(root, "cache", "stats", "--cache", str(shared))
    store = root / ".rlmake" / "cache"
    assert figure(stats, "builds recorded") == "2"
    assert figure(stats, "restored (hits)") == "2"
    assert figure(stats, "misses") == "4"
    assert figure(stats, "local store") == f"8 entries, {_size_of(store)} in {store}"
    assert figure(stats, "shared store") == f"6 entries, {_size_of(shared)} in {shared}"
    local_at = stats.lines.index(next(line for line in stats.lines
                                      if line.startswith("local store:")))
    shared_at = stats.lines.index(next(line for line in stats.lines
                                       if line.startswith("shared store:")))
    local_lines, shared_lines = stats.lines[local_at:shared_at], stats.lines[shared_at:]
    assert local_lines[1].split() == ["records:", "4,"] + local_lines[1].split()[2:]
    assert local_lines[2].split()[:2] == ["blobs:", "4,"]
    assert shared_lines[1].split()[:2] == ["records:", "3,"]
    assert shared_lines[2].split()[:2] == ["blobs:", "3,"]
    assert shared_lines[3].startswith("  oldest use:") and shared_lines[4].startswith(
        "  newest use:")
    without = rlmake(root, "cache", "stats")
    assert not any(line.startswith("shared store") for line in without.lines)


def test_nothing_that_is_not_rlmakes_is_listed_or_removed(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    digest = "ab" * 20
    strays = {"rlmake-store.json": "{}", "README": "mine", "ac/notes.txt": "mine",
              "ac/ab/NOT-HEX": "mine", f"ac/cd/{digest}": "wrong shard",
              f"cas/ab/{digest}.bak": "mine", "cas/ab/.tmp-mine": "not a temporary of ours",
              "other/ab/" + digest: "elsewhere"}
    for relative, text in strays.items():
        (shared / relative).parent.mkdir(parents=True, exist_ok=True)
        (shared / relative).write_text(text)
        age_file(shared / relative, 400 * DAY)
    os.symlink(tmp_path / "p" / "a.txt", shared / "cas" / "ab" / ("ab" * 20))
    elsewhere = tmp_path / "elsewhere"          # a shard that leads out of the store
    elsewhere.mkdir()
    (elsewhere / ("ef" * 20)).write_text("not in the store")
    age_file(elsewhere / ("ef" * 20), 400 * DAY)
    os.symlink(elsewhere, shared / "ac" / "ef")
    stats = rlmake(root, "cache", "stats", "--cache", str(shared))
    assert figure(stats, "shared store").startswith("6 entries")
    rlmake(root, "cache", "gc", "--cache", str(shared), "--cache-write", "--max-age", "0s")
    left = sorted(str(path.relative_to(shared)) for path in shared.rglob("*")
                  if path.is_symlink() or not path.is_dir())
    assert left == sorted([*strays, f"cas/ab/{digest}", "ac/ef"])
    assert (root / "a.txt").read_text() == "alpha\n"
    assert (elsewhere / ("ef" * 20)).read_text() == "not in the store"


def test_gc_of_a_shared_directory_removes_only_stale_temporaries(tmp_path):
    root, shared = new_project(tmp_path / "p"), tmp_path / "shared"
    build(root, shared, write=True)
    shard = next((shared / "cas").iterdir())
    stale, fresh = shard / ".tmp-0123456789abcdef", shard / ".tmp-fedcba9876543210"
    stale.write_bytes(b"half a blob, killed two days ago")
    fresh.write_bytes(b"half a blob, being written now")
    age_file(stale, 2 * DAY)
    result = rlmake(root, "cache", "gc", "--cache", str(shared), "--cache-write",
                    "--max-age", "30d")
    assert f"shared store {shared}: removed 1 temporary files left by interrupted writes" \
        in result.lines
    assert not stale.exists() and fresh.exists()
    assert len(entries_of(shared)) == 6


# --- S3's listing and batches, against a client that records its calls ----------------------

class RecordingS3Client:
    """Pages of ListObjectsV2 as given; DeleteObjects recorded, failing for `refuse`."""

    def __init__(self, pages: list[list[tuple[str, int, float]]], refuse: tuple[str, ...] = ()):
        self.pages = pages
        self.refuse = set(refuse)
        self.listed: list[str] = []
        self.deletes: list[list[str]] = []

    def get_paginator(self, operation: str):
        assert operation == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str):
        import datetime

        self.listed.append(Prefix)
        for page in self.pages:
            yield {"Contents": [{"Key": key, "Size": size, "LastModified":
                                 datetime.datetime.fromtimestamp(when, datetime.timezone.utc)}
                                for key, size, when in page]}

    def delete_objects(self, Bucket: str, Delete: dict):
        keys = [item["Key"] for item in Delete["Objects"]]
        assert Delete["Quiet"] is True and len(keys) <= 1000
        self.deletes.append(keys)
        return {"Errors": [{"Key": key, "Code": "AccessDenied", "Message": "Access Denied"}
                           for key in keys if key in self.refuse]}


def _s3_store(client: RecordingS3Client):
    pytest.importorskip("boto3")
    from rlmake.cache.s3 import S3Store

    store = S3Store("s3://bucket/ci")
    store._client = client
    return store


def _digest(number: int) -> str:
    return f"{number:040x}"


def test_s3_listing_reads_every_page_and_only_rlmakes_keys():
    pages = [[(f"ci/cas/{_digest(n)}", n, 1000.0 + n) for n in range(1000)],
             [(f"ci/ac/{_digest(7)}", 5, 50.0), ("ci/rlmake-store.json", 9, 1.0),
              (f"ci/ac/{_digest(8)}/x", 9, 1.0), ("ci/ac/README", 9, 1.0),
              (f"ci/tmp/{_digest(9)}", 9, 1.0)]]
    client = RecordingS3Client(pages)
    entries = list(_s3_store(client).entries())
    assert client.listed == ["ci/"]             # not ci2/ or cixyz/
    assert len(entries) == 1001
    assert entries[-1] == Entry(RECORD, _digest(7), 5, 50.0)
    assert entries[3] == Entry(BLOB, _digest(3), 3, 1003.0)


def test_s3_removal_goes_in_batches_of_1000_records_first():
    pages = [[(f"ci/cas/{_digest(n)}", 1, 10.0) for n in range(1500)]
             + [(f"ci/ac/{_digest(n)}", 1, 10.0) for n in range(1000)]]
    client = RecordingS3Client(pages)
    collected = housekeeping.collect(_s3_store(client), Limits(max_age=0), now=20.0)
    assert [len(batch) for batch in client.deletes] == [1000, 1000, 500]
    assert all("/ac/" in key for key in client.deletes[0])
    assert all("/cas/" in key for key in client.deletes[1] + client.deletes[2])
    assert collected.removed.count == {RECORD: 1000, BLOB: 1500}
    assert collected.error is None and collected.kept.total_count == 0


def test_s3_removal_that_is_refused_stops_and_says_so(tmp_path):
    pages = [[(f"ci/ac/{_digest(n)}", 1, 10.0) for n in range(1200)]]
    client = RecordingS3Client(pages, refuse=(f"ci/ac/{_digest(3)}",))
    collected = housekeeping.collect(_s3_store(client), Limits(max_age=0), now=20.0)
    assert len(client.deletes) == 1             # no second batch after a refusal
    assert collected.removed.total_count == 999 and collected.kept.total_count == 201
    assert collected.error == (f"s3://bucket/ci: 1 object(s) could not be removed, e.g. "
                               f"ci/ac/{_digest(3)}: AccessDenied Access Denied")
    lines = housekeeping.collected_lines("shared store", collected, dry_run=False)
    assert lines == ["shared store s3://bucket/ci: removed 999 entries (999 records, 0 blobs), "
                     "freed 999 B; kept 201 entries, 201 B"]
