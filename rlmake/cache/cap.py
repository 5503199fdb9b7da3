"""The size cap of a project's own store (`.rlmake/cache`), kept after every build that
stored something, in bounded time.

Walking a store of a million entries after every build would cost more than the
build, so the store keeps a running estimate of its size in a small file at its
root (ESTIMATE_NAME, beside `ac/` and `cas/`, where `gc` never looks): each build
adds what it wrote. Only when the estimate passes the cap is the store walked,
and then the least recently used entries are removed until it holds KEEP_FRACTION
of the cap, so the next walk is a fifth of the cap's worth of writes away. A store
with no estimate (made by an older rlmake, or after `rlmake cache gc`) is walked
once to measure it.

The estimate only errs upwards: an entry stored again (a record rewritten under
its key) is counted twice, which at worst brings the next walk forward, and the
walk sets the figure right. The project's lock is held while a build writes the
store and while this runs, so no other rlmake writes it meanwhile.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from rlmake.cache import housekeeping

if TYPE_CHECKING:
    from rlmake.cache.local import LocalStore

KEEP_FRACTION = 0.8
ESTIMATE_NAME = "size-estimate"


def read_estimate(root: str) -> int | None:
    """The store's size as last counted, or None if not known (no file, or not a count)."""
    try:
        with open(os.path.join(root, ESTIMATE_NAME), "rb") as stream:
            text = stream.read(32)
    except OSError:
        return None
    return int(text) if text.strip().isdigit() else None


def write_estimate(root: str, size: int) -> None:
    """Replace the estimate at once (a temporary renamed into place): a build killed
    halfway leaves the old figure or the new one, never a half-written one."""
    path = os.path.join(root, ESTIMATE_NAME)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as stream:
        stream.write(f"{size}\n")
    os.replace(temporary, path)


def forget_estimate(root: str) -> None:
    """After a collection that did not count what it kept (`cache gc`): measure anew."""
    try:
        os.unlink(os.path.join(root, ESTIMATE_NAME))
    except FileNotFoundError:
        pass


def keep_under(store: "LocalStore", max_bytes: int, written: int,
               now: float | None = None) -> housekeeping.Collected | None:
    """After a build that wrote `written` bytes into `store`: when the store is over
    `max_bytes`, remove the least recently used entries down to KEEP_FRACTION of it.
    Returns what was collected, or None when the store fits (nothing walked)."""
    estimate = read_estimate(store.root)
    size = housekeeping.survey(store).total_size if estimate is None else estimate + written
    if size <= max_bytes:
        write_estimate(store.root, size)
        return None
    limits = housekeeping.Limits(max_bytes=int(max_bytes * KEEP_FRACTION))
    collected = housekeeping.collect(store, limits, time.time() if now is None else now)
    write_estimate(store.root, collected.kept.total_size)
    return collected
