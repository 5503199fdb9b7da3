"""The jobs decided stale and waiting for a slot: longest chain ahead first, pools kept.

A chain's length is in seconds: each job weighs what its last run took (as ninja
weighs by its build log), so one slow compile ahead of a long link starts before
a hundred quick jobs that nothing waits on.
"""

from __future__ import annotations

import heapq
from typing import Callable, Generic, Iterable, Mapping, TypeVar

from rlmake.model import Job, Plan

Payload = TypeVar("Payload")


UNKNOWN_SECONDS = 1.0       # a job's weight when no job of the build has ever run


def critical_path_lengths(plan: Plan, work: Iterable[int],
                          seconds: Mapping[str, float] | None = None) -> dict[str, float]:
    """For each job of `work` (indices in dependency order), the length of the longest
    chain from it to a requested target, counting only `work`: in seconds, each job
    weighing `seconds[target]` (its last run), or the median of the known ones for a
    job never run; without `seconds`, each job weighs 1."""
    work = list(work)
    chosen = set(work)
    seconds = seconds or {}
    unknown = _median(seconds.values()) if seconds else UNKNOWN_SECONDS
    dependents = plan.index.dependents
    lengths: dict[int, float] = {}
    for i in reversed(work):
        weight = seconds.get(plan.jobs[i].target, unknown)
        lengths[i] = weight + max((lengths[d] for d in dependents[i] if d in chosen),
                                  default=0.0)
    return {plan.jobs[i].target: length for i, length in lengths.items()}


def _median(values: Iterable[float]) -> float:
    """statistics.median, without the 4 ms its import adds to every build that runs a job."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


class ReadyQueue(Generic[Payload]):
    """Stale jobs whose deps are settled, each with what starting it needs (`Payload`)."""

    def __init__(self, priority: Callable[[], Mapping[str, float]], order: dict[str, int],
                 pools: dict[str, int]):
        """`priority()`: target -> chain length, longer starts first; asked at the first
        push, so a build that finds nothing to run never computes it."""
        self._priority_of = priority
        self._priority: Mapping[str, float] | None = None
        self._order = order             # target -> plan order, to break ties
        self._pools = pools
        self._heap: list[tuple[float, int, str]] = []
        self._waiting: dict[str, tuple[Job, Payload]] = {}
        self._pool_use: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, job: Job, payload: Payload) -> None:
        if self._priority is None:
            self._priority = self._priority_of()
        heapq.heappush(self._heap, (-self._priority[job.target], self._order[job.target],
                                    job.target))
        self._waiting[job.target] = (job, payload)

    def pop(self) -> tuple[Job, Payload] | None:
        """The most urgent job whose pool has room (its pool place is taken), or None."""
        blocked = []
        found = None
        while self._heap:
            item = heapq.heappop(self._heap)
            job, payload = self._waiting[item[2]]
            if job.pool and self._pool_use.get(job.pool, 0) >= self._pools[job.pool]:
                blocked.append(item)
                continue
            del self._waiting[item[2]]
            if job.pool:
                self._pool_use[job.pool] = self._pool_use.get(job.pool, 0) + 1
            found = job, payload
            break
        for item in blocked:
            heapq.heappush(self._heap, item)
        return found

    def release(self, job: Job) -> None:
        """`job` no longer runs: its pool place is free."""
        if job.pool:
            self._pool_use[job.pool] -= 1

    def drain(self) -> list[Job]:
        """Empty the queue (the build is stopping); the jobs that were waiting."""
        jobs = [job for job, _ in self._waiting.values()]
        self._heap.clear()
        self._waiting.clear()
        return jobs
