"""A recorded build as the data `rlmake report` draws: each run on its parallel slot, the
critical path, the slowest jobs and rules, counts by status and the cache's hit rates.

Computed here, in Python, from the state database's records; the page only draws it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any, Sequence

from rlmake.cache.settings import LOCAL_STORE
from rlmake.model import RunRecord, Status
from rlmake.report.slots import assign_slots
from rlmake.reporters.console import readable_rule
from rlmake.state import CacheUse, Execution

SLOWEST = 20                    # rows in the tables of slowest jobs and rules


def report_data(execution: Execution, runs: Sequence[RunRecord], cache: CacheUse
                ) -> dict[str, Any]:
    origin = min([execution.started, *(run.started for run in runs)])
    slots = assign_slots([(run.started, run.ended) for run in runs])
    ended = max([execution.ended or execution.started, *(run.ended for run in runs)])
    return {
        "execution": {"id": execution.id, "argv": execution.argv,
                      "status": execution.status.value,
                      "started": datetime.fromtimestamp(execution.started, timezone.utc)
                      .isoformat(timespec="seconds"),
                      "elapsed": round(ended - origin, 6)},
        "slots": max(slots, default=-1) + 1,
        "jobs": [_job(run, origin, slot) for run, slot in zip(runs, slots, strict=True)],
        "critical": critical_path(runs),
        "slowest_jobs": sorted(range(len(runs)), key=lambda i: -_duration(runs[i]))[:SLOWEST],
        "slowest_rules": slowest_rules(runs),
        "counts": counts(execution, runs),
        "cache": cache_rates(runs, cache),
    }


def _job(run: RunRecord, origin: float, slot: int) -> dict[str, Any]:
    return {"target": run.target, "rule": run.rule, "status": run.status.value,
            "start": round(run.started - origin, 6), "duration": round(_duration(run), 6),
            "slot": slot, "exit_code": run.exit_code, "cache_source": run.cache_source,
            "reasons": [str(reason) for reason in run.reasons],
            "commands": list(run.inputs.commands), "output": run.output_tail}


def critical_path(runs: Sequence[RunRecord]) -> list[int]:
    """The chain of runs, each reading what the one before it wrote, whose durations add up
    to the most: the indices of `runs`, first to last.

    A run's deps are the files and phony names its recorded inputs name (declared and
    depfile deps). Runs are taken in the order they ended, and a run only follows one that
    ended before it: a dep is always built first, so this is an order of the graph, and
    records that say otherwise (a clock stepped back) cannot make a cycle."""
    made_by: dict[str, int] = {}
    for index, run in enumerate(runs):
        for name in (run.target, *run.inputs.outputs):
            made_by[name] = index
    longest: dict[int, float] = {}
    previous: dict[int, int] = {}
    for index in sorted(range(len(runs)), key=lambda i: (runs[i].ended, i)):
        run = runs[index]
        best, before = 0.0, None
        for dep in (*(path for path, _ in run.inputs.deps), *run.inputs.depfile_deps):
            maker = made_by.get(dep)
            if maker is not None and maker in longest and longest[maker] > best:
                best, before = longest[maker], maker
        longest[index] = best + _duration(run)
        if before is not None:
            previous[index] = before
    if not longest:
        return []
    last = max(longest, key=lambda i: (longest[i], -i))
    chain = [last]
    while chain[-1] in previous:
        chain.append(previous[chain[-1]])
    return chain[::-1]


def slowest_rules(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The rules whose runs took the most time in all, with count and longest run."""
    times: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        times[readable_rule(run.rule)].append(_duration(run))
    ranked = sorted(times.items(), key=lambda item: -sum(item[1]))[:SLOWEST]
    return [{"rule": rule, "jobs": len(durations), "total": round(sum(durations), 6),
             "longest": round(max(durations), 6)} for rule, durations in ranked]


def counts(execution: Execution, runs: Sequence[RunRecord]) -> dict[str, int]:
    """Jobs by status: the recorded runs, and the jobs found up to date (not recorded one
    by one)."""
    found = Counter({status.value: 0 for status in (Status.DONE, Status.RESTORED,
                                                    Status.FAILED)})
    found.update(run.status.value for run in runs)
    found[Status.CACHED.value] = execution.cached
    return dict(found)


def cache_rates(runs: Sequence[RunRecord], cache: CacheUse) -> dict[str, Any]:
    """Hits in the project's own store and in shared stores, each out of every lookup the
    build made (a job looked up once; the first store that has it counts the hit)."""
    lookups = cache.restored + cache.misses
    sources = Counter(run.cache_source for run in runs if run.status is Status.RESTORED)
    local = sources.pop(LOCAL_STORE, 0)
    sources.pop(None, 0)
    shared = sum(sources.values())
    return {"lookups": lookups, "local_hits": local, "shared_hits": shared,
            "shared_stores": sorted(sources),
            "local_rate": round(local / lookups, 4) if lookups else None,
            "shared_rate": round(shared / lookups, 4) if lookups else None}


def _duration(run: RunRecord) -> float:
    return max(0.0, run.ended - run.started)
