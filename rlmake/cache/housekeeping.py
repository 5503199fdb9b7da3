"""Housekeeping of artifact stores: what a store holds, and removing what is old or too much.

A store that can be tended lists its entries, each an `Entry(kind, key, size,
last_used)`, and removes a list of them; the policy (by age, by size) and the figures
are here, the same for a directory store and for S3.

`last_used` is what the store can tell: a directory store touches an entry's mtime on
every hit, so it is the last use; S3 keeps no time of access, so there it is the time
the object was stored (`tracks_use` is False), and rlmake does not rewrite an object on
a hit to refresh it (a copy per restore costs a request and needs write access, which
CI readers do not have).

Removal is safe while builds use the store, which a shared store has no lock against:
- a reader that finds a record whose blob is gone refuses it as a miss
  (ArtifactCache._place_outputs) and runs the job, so no order of removal corrupts a
  build. Within one pass records still go before blobs, so a reader during the pass
  is less likely to fetch a record only to miss its blob;
- a writer that stores a blob again after it was removed is fine: the blob is the
  same bytes under the same digest;
- a blob removed just after a writer found it present leaves that writer's record
  naming a missing blob: readers miss on it until a writer runs the job again and
  stores both. The same holds for a blob removed by age that a newer record shares.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Iterator, NamedTuple, Protocol, Sequence

from rlmake.cache.base import StoreError
from rlmake.errors import RlmakeError, UsageError
from rlmake.hashing import LOWER_HEX

RECORD, BLOB = "ac", "cas"          # the store's own directory names
KINDS = {RECORD: "records", BLOB: "blobs"}
# A temporary file in a shared directory store is a write under way, unless it is this old:
# then the write was killed, and gc removes it.
STALE_TEMPORARY_SECONDS = 24 * 3600


def is_entry_name(name: str) -> bool:
    """Whether `name` is one rlmake gives a record or blob: a lowercase hex digest (of any
    length one of its versions used, so that entries of an older digest still age out)."""
    return len(name) >= _SHORTEST_DIGEST and not name.strip(LOWER_HEX)


_SHORTEST_DIGEST = 32


class Entry(NamedTuple):
    kind: str           # RECORD or BLOB
    key: str            # a job key (records) or a content digest (blobs)
    size: int
    last_used: float    # seconds since the epoch (see the module's docstring)


class Tended(Protocol):
    name: str
    tracks_use: bool    # last_used is the last hit; False: the time the entry was stored

    def entries(self) -> Iterator[Entry]:
        """Every record and blob (nothing else the store's directory or prefix holds)."""

    def remove(self, entries: Sequence[Entry]) -> Iterator[Entry]:
        """Remove `entries` in order, yielding each one removed; one used since it was
        listed may be kept. Raises StoreError on the first failure."""


class Summary:
    """Entries and bytes of each kind, and the oldest and newest `last_used`."""

    def __init__(self, entries: Iterable[Entry] = ()):
        self.count = dict.fromkeys(KINDS, 0)
        self.size = dict.fromkeys(KINDS, 0)
        self.oldest: float | None = None
        self.newest: float | None = None
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entry) -> None:
        self.count[entry.kind] += 1
        self.size[entry.kind] += entry.size
        self.oldest = entry.last_used if self.oldest is None else min(self.oldest, entry.last_used)
        self.newest = entry.last_used if self.newest is None else max(self.newest, entry.last_used)

    @property
    def total_count(self) -> int:
        return sum(self.count.values())

    @property
    def total_size(self) -> int:
        return sum(self.size.values())


class Limits(NamedTuple):
    max_age: float | None = None        # seconds: entries unused this long go
    max_bytes: int | None = None        # the least recently used go until the store fits

    @classmethod
    def parse(cls, max_age: str | None, max_size: str | None) -> "Limits":
        if max_age is None and max_size is None:
            raise UsageError("cache gc needs --max-age AGE, --max-size SIZE or both, "
                             "e.g. --max-age 30d --max-size 50G")
        return cls(None if max_age is None else parse_age(max_age),
                   None if max_size is None else parse_size(max_size))


class Collected(NamedTuple):
    store: str
    removed: Summary
    kept: Summary
    error: str | None = None            # why removal stopped early
    temporaries: tuple[int, int] = (0, 0)   # files killed writes left, removed: (count, bytes)


def survey(store: Tended) -> Summary:
    """What `store` holds."""
    try:
        return Summary(store.entries())
    except StoreError as error:
        raise _failed(store, error) from None


def select(entries: Iterable[Entry], limits: Limits, now: float) -> list[Entry]:
    """The entries to remove: every one unused for `max_age` or longer, then the least
    recently used until the rest fit in `max_bytes`; records before blobs."""
    oldest_first = sorted(entries, key=lambda entry: (entry.last_used, entry.kind, entry.key))
    remaining = sum(entry.size for entry in oldest_first)
    chosen = []
    for entry in oldest_first:
        too_old = limits.max_age is not None and now - entry.last_used >= limits.max_age
        too_big = limits.max_bytes is not None and remaining > limits.max_bytes
        if not (too_old or too_big):
            break               # every later entry is newer, and the store only shrank
        chosen.append(entry)
        remaining -= entry.size
    return sorted(chosen, key=lambda entry: entry.kind != RECORD)     # stable: age order kept


def collect(store: Tended, limits: Limits, now: float, dry_run: bool = False) -> Collected:
    """Remove from `store` what `limits` select (with `dry_run`, only say so)."""
    try:
        entries = list(store.entries())
    except StoreError as error:
        raise _failed(store, error) from None
    chosen = select(entries, limits, now)
    removed: list[Entry] = []
    problem = None
    if dry_run:
        removed = chosen
    else:
        try:
            for entry in store.remove(chosen):
                removed.append(entry)
        except StoreError as error:
            problem = str(error)
    gone = set(removed)
    return Collected(store.name, Summary(removed),
                     Summary(entry for entry in entries if entry not in gone), problem)


def _failed(store: Tended, error: StoreError) -> RlmakeError:
    """The store's error for the user, naming the store once."""
    text = str(error)
    return RlmakeError(text if store.name in text else f"{store.name}: {text}")


# --- the command line's units ---------------------------------------------------------------

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])\s*")


def parse_size(text: str) -> int:
    """500M, 2G, 1.5GiB, 1024: a finite size of at least zero (never inf, nan or -1G, which
    would keep everything or remove everything)."""
    match = _SIZE.fullmatch(text)
    size = float(match[1]) * _SIZE_UNITS[match[2].upper()] if match else math.nan
    if not math.isfinite(size):             # also 400 digits, which float() makes inf
        raise UsageError(f"bad size '{text}': use a number with K, M, G or T, e.g. 500M")
    return int(size)


def parse_age(text: str) -> float:
    """30d, 12h, 90m, 45s, 2w: a finite age of at least zero. The unit is required: a bare
    30 could be meant as days as easily as seconds (and m is minutes, never months)."""
    match = _AGE.fullmatch(text)
    age = float(match[1]) * _AGE_UNITS[match[2]] if match else math.nan
    if not math.isfinite(age):
        raise UsageError(f"bad age '{text}': use a number with s, m, h, d or w, e.g. 30d")
    return age


def format_size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


# --- what the commands print ----------------------------------------------------------------

def summary_lines(label: str, store: Tended, summary: Summary, now: float) -> list[str]:
    """`cache stats`' lines for one store."""
    lines = [f"{label + ':':<18}{_entries(summary.total_count)}, "
             f"{format_size(summary.total_size)} in {store.name}"]
    for kind, plural in KINDS.items():
        lines.append(f"  {plural + ':':<16}{summary.count[kind]}, "
                     f"{format_size(summary.size[kind])}")
    if summary.oldest is not None and summary.newest is not None:
        what = "use" if store.tracks_use else "stored"
        lines.append(f"  {'oldest ' + what + ':':<16}{_when(summary.oldest, now)}")
        lines.append(f"  {'newest ' + what + ':':<16}{_when(summary.newest, now)}")
        if not store.tracks_use:
            lines.append("  (S3 keeps no time of use: an entry's age is since it was stored)")
    return lines


def collected_lines(label: str, collected: Collected, dry_run: bool) -> list[str]:
    """`cache gc`'s lines, each naming the store it is about (an error that stopped it is
    the command's to report)."""
    where = f"{label} {collected.store}:"
    removed, kept = collected.removed, collected.kept
    verb = "would remove" if dry_run else "removed"
    lines = [f"{where} {verb} {_entries(removed.total_count)} ({_kinds(removed)}), "
             f"{'would free' if dry_run else 'freed'} {format_size(removed.total_size)}; "
             f"{'would keep' if dry_run else 'kept'} {_entries(kept.total_count)}, "
             f"{format_size(kept.total_size)}"]
    count, _ = collected.temporaries
    if count:
        lines.append(f"{where} removed {count} temporary files left by interrupted writes")
    return lines


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _kinds(summary: Summary) -> str:
    return ", ".join(f"{summary.count[kind]} {plural[:-1] if summary.count[kind] == 1 else plural}"
                     for kind, plural in KINDS.items())


def _when(moment: float, now: float) -> str:
    import datetime

    stamp = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    return f"{stamp:%Y-%m-%d %H:%M:%S} UTC ({format_age(max(0.0, now - moment))} ago)"


def format_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f}{unit}"
    return f"{seconds:.0f}s"
