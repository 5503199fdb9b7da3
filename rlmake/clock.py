"""Time as the engine sees it: a seam that tests replace with a clock they advance.

File digests are not timed by it: the memo's racy window compares the file
system's timestamps with the real time (hashing.py), and a fake clock must not
be able to make a fresh file look old.
"""

from __future__ import annotations

import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch, for records and reports."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, for intervals (batching commits)."""


class SystemClock:
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
