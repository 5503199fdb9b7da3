"""The jobs decided stale and waiting for a slot: longest chain ahead first, pools kept."""

from __future__ import annotations

import heapq
from typing import Generic, Iterable, TypeVar

from rlmake.model import Job, Plan

Payload = TypeVar("Payload")


def critical_path_lengths(plan: Plan, work: Iterable[int]) -> dict[str, int]:
    """For each job of `work` (indices in dependency order), the number of jobs on the
    longest chain from it to a requested target, counting only `work`."""
    work = list(work)
    chosen = set(work)
    dependents = plan.index.dependents
    lengths: dict[int, int] = {}
    for i in reversed(work):
        lengths[i] = 1 + max((lengths[d] for d in dependents[i] if d in chosen), default=0)
    return {plan.jobs[i].target: length for i, length in lengths.items()}


class ReadyQueue(Generic[Payload]):
    """Stale jobs whose deps are settled, each with what starting it needs (`Payload`)."""

    def __init__(self, priority: dict[str, int], order: dict[str, int], pools: dict[str, int]):
        self._priority = priority       # target -> chain length: longer starts first
        self._order = order             # target -> plan order, to break ties
        self._pools = pools
        self._heap: list[tuple[int, int, str]] = []
        self._waiting: dict[str, tuple[Job, Payload]] = {}
        self._pool_use: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, job: Job, payload: Payload) -> None:
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
