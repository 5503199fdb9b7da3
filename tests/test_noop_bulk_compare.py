"""The no-op's checks compare whole runs of stats at once (a piece of the up-to-date
snapshot as one bytes string, the stored plan's probed files grouped by kind).
Each must answer exactly what a check of one file at a time answers: these properties
hold them to a plain per-file statement of the rules, on real files changed at random
(one stat field of any file, a file gone, a file turned into a directory and back, a
stat seen earlier by the plan's check, content rewritten within the racy window).

In-process, on real files in a temporary directory of its own per example."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rlmake import plancache
from rlmake.hashing import RACY_WINDOW_NS, digest_file
from rlmake.uptodate import SEEN, Columns, Piece, Seen, Snapshot, changed_files, seen_stat

SETTINGS = settings(max_examples=300, deadline=None, database=None)
FIELDS = ("dev", "ino", "size", "mtime_ns", "ctime_ns")

# What may have happened to one file since its entry was taken.
changes = st.one_of(
    st.just(("same",)),
    st.tuples(st.just("field"), st.sampled_from(range(5)),
              # off by one, far off, or out of what 64 bits hold (the unpacked fallback)
              st.sampled_from([1, -1, 1 << 40, 1 << 64])),
    st.just(("gone",)),
    st.just(("directory",)),
    st.just(("rewritten",)),        # same stat as the entry, other content
)
# How the check learns each file's stat: its own stat, or the stored plan's check's
# (`Seen`), taken before the change or after it.
looks = st.sampled_from(["stat", "seen-before", "seen-after"])
# Whether the file's mtime was set back an hour before its entry was taken: its ctime
# alone is then recent.
backdated = st.booleans()
files = st.lists(st.tuples(changes, looks, backdated), min_size=1, max_size=12)
# How long after the newest mtime or ctime the piece was taken: on either side of the
# racy window, and on its edge.
taken_after = st.sampled_from([0, 1, RACY_WINDOW_NS - 1, RACY_WINDOW_NS, RACY_WINDOW_NS + 1,
                               10 * RACY_WINDOW_NS])


def entry_of(root: Path, name: str) -> tuple:
    found = os.stat(root / name)
    return (name, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns,
            found.st_ctime_ns, digest_file(str(root / name)))


def apply(root: Path, entry: tuple, change: tuple) -> tuple:
    """Change the file or its entry; the entry the snapshot holds for it."""
    name = entry[0]
    if change[0] == "field":
        _, field, delta = change
        return entry[:1 + field] + (entry[1 + field] + delta,) + entry[2 + field:]
    if change[0] == "gone":
        os.remove(root / name)
    elif change[0] == "directory":
        os.remove(root / name)
        os.mkdir(root / name)
    elif change[0] == "rewritten":
        return entry[:6] + ("not its digest",)
    return entry


def expected(root: Path, entries: list[tuple], seen: dict[str, bytes], taken_ns: int
             ) -> tuple[set[str], bool]:
    """The rules, one file at a time: a file is changed if its stat (the one seen
    earlier, else its stat now) differs from its entry, or it cannot be stat'ed; an
    entry too fresh to trust by stat is read again, and changed if its content differs."""
    changed, read_again = set(), False
    for name, *stat, digest in entries:
        if name in seen:
            now = SEEN.unpack(seen[name])
        else:
            try:
                found = os.stat(root / name)
            except OSError:
                changed.add(name)
                continue
            now = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns,
                   found.st_ctime_ns)
        if now != tuple(stat):
            changed.add(name)
        elif max(stat[3], stat[4]) >= taken_ns - RACY_WINDOW_NS:
            read_again = True
            try:
                content = digest_file(str(root / name))
            except OSError:
                content = None
            if content != digest:
                changed.add(name)
    return changed, read_again


@SETTINGS
@given(files=files, after=taken_after)
def test_a_piece_checked_at_once_answers_as_each_file_checked_alone(files, after):
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        names = [f"f{number:02}.c" for number in range(len(files))]
        for number, (name, (_, _, back)) in enumerate(zip(names, files, strict=True)):
            (root / name).write_text(f"source {number}\n")
            if back:
                an_hour_ago = os.stat(root / name).st_mtime_ns - 3600 * 10**9
                os.utime(root / name, ns=(an_hour_ago, an_hour_ago))
        entries = [entry_of(root, name) for name in names]
        taken_ns = max(max(entry[4], entry[5]) for entry in entries) + after
        seen = {name: seen_stat(os.stat(root / name))
                for name, (_, look, _) in zip(names, files, strict=True) if look == "seen-before"}
        entries = [apply(root, entry, change) for entry, (change, _, _) in zip(entries, files, strict=True)]
        seen.update({name: seen_stat(os.stat(root / name))
                     for name, (_, look, _) in zip(names, files, strict=True)
                     if look == "seen-after" and os.path.isfile(root / name)})
        piece = Piece.of(taken_ns, tuple(entries))
        snapshot = Snapshot((piece,), {}, (names[0],))
        changed, verified = changed_files(snapshot, temporary, Seen(0, seen))
        want_changed, want_read = expected(root, entries, seen, taken_ns)
        assert changed == want_changed
        assert (0 in verified) == (want_read and not want_changed)


@SETTINGS
@given(files=files)
def test_a_piece_decodes_to_the_entries_it_was_made_of(files):
    entries = tuple((f"f{number}", number, number + 1 + (1 << 64) * (change[0] == "field"),
                     number * 3, -number, number << 40, f"d{number}")
                    for number, (change, _, _) in enumerate(files))
    assert Piece.of(0, entries).entries == entries


# --- the stored plan's check of probed paths ----------------------------------------

KINDS = ("file", "dir", "missing")
probe_changes = st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(KINDS)),
                         min_size=1, max_size=12)


def make(root: Path, name: str, kind: str) -> None:
    if kind == "file":
        (root / name).write_text(name)
        an_hour_ago = os.stat(root / name).st_mtime_ns - 3600 * 10**9
        os.utime(root / name, ns=(an_hour_ago, an_hour_ago))    # mtime and ctime apart
    elif kind == "dir":
        (root / name).mkdir()


@SETTINGS
@given(kinds=probe_changes)
def test_the_probes_checked_at_once_answer_as_each_probed_alone(kinds):
    """Unchanged only if every path is of the kind expansion found, and then `seen`
    holds the stat of each file (and nothing else)."""
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        names = [f"p{number:02}" for number in range(len(kinds))]
        for name, (now, _) in zip(names, kinds, strict=True):
            make(root, name, now)
        probes = tuple(tuple(name for name, (now, _) in zip(names, kinds, strict=True) if now == kind)
                       for kind in KINDS)
        for name, (before, after) in zip(names, kinds, strict=True):
            if before != after:
                if before == "file":
                    os.remove(root / name)
                elif before == "dir":
                    os.rmdir(root / name)
                make(root, name, after)
        seen: dict[str, bytes] = {}
        unchanged = plancache._unchanged(temporary, (), (), probes, seen)
        assert unchanged == all(before == after for before, after in kinds)
        if unchanged:
            assert seen == {name: seen_stat(os.stat(root / name))
                            for name, (kind, _) in zip(names, kinds, strict=True) if kind == "file"}


# --- the no-op's path --------------------------------------------------------------

@SETTINGS
@given(looks=st.lists(st.sampled_from(["stat", "seen"]), min_size=1, max_size=12))
def test_an_unchanged_piece_is_judged_without_its_entries(looks):
    """The whole point: files unchanged and long since written (some seen by the plan's
    check, some not, in any mix) are found so without a loop over the entries."""
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        names = [f"f{number:02}.c" for number in range(len(looks))]
        for name in names:
            (root / name).write_text(name)
            an_hour_ago = os.stat(root / name).st_mtime_ns - 3600 * 10**9
            os.utime(root / name, ns=(an_hour_ago, an_hour_ago))    # mtime and ctime apart
        entries = tuple(entry_of(root, name) for name in names)
        taken_ns = max(max(entry[4], entry[5]) for entry in entries) + 10 * RACY_WINDOW_NS
        seen = {name: seen_stat(os.stat(root / name))
                for name, look in zip(names, looks, strict=True) if look == "seen"}
        snapshot = Snapshot((Piece.of(taken_ns, entries),), {}, (names[0],))
        real = Columns.entries
        Columns.entries = _refused          # type: ignore[method-assign]
        try:
            assert changed_files(snapshot, temporary, Seen(0, seen)) == (set(), {})
        finally:
            Columns.entries = real          # type: ignore[method-assign]


def _refused(columns):
    raise AssertionError("an unchanged piece was checked one entry at a time")


# --- stats that do not pack ---------------------------------------------------------

YEAR_2300_NS = 10_413_792_000 * 10**9       # past what a signed 64-bit ns holds


def test_a_file_dated_after_2262_is_checked_one_entry_at_a_time(tmp_path):
    """Its stat packs neither in the piece nor now: the entries decide, as before."""
    for name in ("a.c", "b.c"):
        (tmp_path / name).write_text(name)
    os.utime(tmp_path / "b.c", ns=(YEAR_2300_NS, YEAR_2300_NS))
    entries = (entry_of(tmp_path, "a.c"), entry_of(tmp_path, "b.c"))
    snapshot = Snapshot((Piece.of(YEAR_2300_NS + 10 * RACY_WINDOW_NS, entries),), {}, ("a.c",))
    assert Piece.of(0, entries).columns().stats == tuple(
        value for entry in entries for value in entry[1:6])
    seen = plancache_seen(tmp_path, ("a.c", "b.c"))
    assert set(seen) == {"a.c"}                 # b.c's stat is not kept: stat'ed anew
    assert changed_files(snapshot, str(tmp_path), Seen(0, seen)) == (set(), {})
    os.utime(tmp_path / "b.c", ns=(YEAR_2300_NS + 1, YEAR_2300_NS + 1))
    assert changed_files(snapshot, str(tmp_path), Seen(0, seen))[0] == {"b.c"}


def plancache_seen(root: Path, files: tuple[str, ...]) -> dict[str, bytes]:
    seen: dict[str, bytes] = {}
    assert plancache._unchanged(str(root), (), (), (files, (), ()), seen)
    return seen
