"""Whether a build may read and write a shared store, from its marker and the key.

A store written with RLMAKE_CACHE_KEY says so: a keyed writer that finds no marker
at the store's root puts one there, `rlmake-store.json` holding {"format": 1,
"signed": true}, at its first lookup or write, so before any record of its own.
A reader with the key checks every record's signature and needs no marker. A
reader without one cannot check anything, so it restores from an unmarked store
with a warning (anyone who can write the store can forge its records) and refuses
a marked one; a writer without a key does not write unsigned records into a marked
store, where every keyed reader would refuse them one by one.

A marker rlmake cannot read as one (damaged, too large, a newer format) counts as
signed: a keyless build cannot tell, so it refuses. Only the project's own store in
.rlmake/cache has no marker: it is written by this project's builds alone.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import NamedTuple

from rlmake.cache.base import MARKER_NAME

MARKER_FORMAT = 1
MARKER_LIMIT = 4096         # bytes: a real marker is 30; a larger one is not ours
SIGNED_MARKER = (json.dumps({"format": MARKER_FORMAT, "signed": True}, sort_keys=True)
                 + "\n").encode()


class Marker(NamedTuple):
    present: bool
    problem: str | None = None      # why a present marker is not one rlmake writes


ABSENT = Marker(False)
SIGNED = Marker(True)


def read_marker(data: bytes | None) -> Marker:
    """What the marker's bytes (None: no marker) say; at most MARKER_LIMIT + 1 of them."""
    if data is None:
        return ABSENT
    if len(data) > MARKER_LIMIT:
        return Marker(True, f"larger than {MARKER_LIMIT} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return Marker(True, "not JSON")
    if not isinstance(value, dict) or value.get("signed") is not True:
        return Marker(True, 'not {"signed": true}')
    if value.get("format") != MARKER_FORMAT:
        return Marker(True, f"format {str(value.get('format'))[:20]!r}, not {MARKER_FORMAT}")
    return SIGNED


def needs_marker(keyed: bool, writing: bool) -> bool:
    """A keyed reader checks signatures and needs no marker; everyone else does."""
    return writing or not keyed


class Verdict(NamedTuple):
    read: bool
    write: bool
    mark: bool = False              # write the marker now, before any record
    warning: str | None = None      # said once per build


TRUSTED = Verdict(True, True)       # the project's own store, or a keyed reader's


def decide(name: str, marker: Marker, keyed: bool, writing: bool) -> Verdict:
    """What a build with (`keyed`) or without a key may do with the store `name`."""
    damaged = (f"its marker {MARKER_NAME} is not one rlmake writes ({marker.problem}), "
               if marker.problem else "")
    if keyed:
        if damaged:
            return Verdict(True, writing, warning=(
                f"cache {name}: {damaged}so builds without RLMAKE_CACHE_KEY will refuse "
                f"this store; remove {MARKER_NAME} and the next --cache-write build with "
                "the key writes a new one"))
        return Verdict(True, writing, mark=writing and not marker.present)
    if marker.present:
        verb = "not restoring from it or writing to it" if writing else "not restoring from it"
        why = f"{damaged}so it may be signed" if damaged else "its records are signed"
        return Verdict(False, False, warning=(
            f"cache {name}: {why}, and RLMAKE_CACHE_KEY is not set here: {verb}"))
    return Verdict(True, writing, warning=(
        f"cache {name}: RLMAKE_CACHE_KEY is not set, so its records are not checked: anyone "
        "who can write to this store can choose what this build restores"))


class Refusal(Enum):
    """Why a record was refused, as the end-of-build line counts them."""
    SIGNATURE = "wrong or missing signature (check RLMAKE_CACHE_KEY)"
    MALFORMED = "malformed"
    FOREIGN_PATH = "naming a path outside the project"
    BAD_BLOB = "a blob does not match its digest"


class Refusals:
    """Records refused, by store and kind: the first of each is told as it happens, the
    count once, when the build ends. Not thread-safe: the cache calls it under its lock."""

    def __init__(self):
        self._counts: dict[tuple[str, Refusal], int] = {}

    def add(self, store: str, kind: Refusal) -> bool:
        """Count one; whether it is the first of its kind in that store."""
        count = self._counts.get((store, kind), 0) + 1
        self._counts[(store, kind)] = count
        return count == 1

    def summary(self) -> list[str]:
        """One line per store and kind refused more than once (once is already told)."""
        return [f"cache {store}: {count} records refused: {kind.value}"
                for (store, kind), count in self._counts.items() if count > 1]
