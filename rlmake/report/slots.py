"""Parallel slots assigned after the fact: the tracks a timeline draws jobs on."""

from __future__ import annotations

import heapq
from typing import Sequence


def assign_slots(intervals: Sequence[tuple[float, float]]) -> list[int]:
    """A slot (0, 1, ...) for each (start, end), in the order given, such that no two
    intervals in one slot overlap: interval partitioning, in order of start, each
    interval taking the lowest-numbered slot free at its start. The number of slots
    used is the most intervals ever open at once.

    An interval may start exactly where another ended in the same slot; one that ends
    before it starts is taken as empty."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], intervals[i][1]))
    busy: list[tuple[float, int]] = []      # (end, slot) of the intervals still open
    free: list[int] = []                    # slots closed again, lowest first
    used = 0
    slots = [0] * len(intervals)
    for i in order:
        start, end = intervals[i]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            slot = heapq.heappop(free)
        else:
            slot, used = used, used + 1
        slots[i] = slot
        heapq.heappush(busy, (max(start, end), slot))
    return slots
