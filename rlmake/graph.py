"""The job graph: a networkx DiGraph of jobs, and the queries the rest of rlmake asks of it.

This is the only module that imports networkx, and it imports it lazily:
a build needs only `critical_path_lengths`, which is plain Python, so the
~200 ms that networkx costs to import is paid only by `rlmake graph`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rlmake.model import Plan


if TYPE_CHECKING:
    import networkx


def dep_jobs(plan: Plan, target: str) -> list[str]:
    """The jobs whose outputs `target`'s job reads, each once, in dep order."""
    seen: dict[str, None] = {}
    for dep in plan.job(target).deps:
        owner = plan.producers.get(dep)
        if owner is not None:
            seen.setdefault(owner)
    return list(seen)


def dirty_jobs(plan: Plan, changed: set[str], touched: set[str]) -> list[int]:
    """The jobs (indices, in dependency order) that a change to the files `changed` can
    make stale, with the jobs in `touched` (their depfiles listed a changed file) and every
    `always` job: those, and everything downstream of them. Proportional to the answer."""
    index = plan.index
    seeds = {reader for path in changed for reader in index.readers.get(path, ())}
    seeds.update(plan.index_of(target) for target in touched)
    seeds.update(index.always)
    dirty, frontier = set(seeds), list(seeds)
    while frontier:
        for dependent in index.dependents[frontier.pop()]:
            if dependent not in dirty:
                dirty.add(dependent)
                frontier.append(dependent)
    return sorted(dirty)


def to_networkx(plan: Plan) -> "networkx.DiGraph":
    """Jobs as nodes (with their Job as `job`), an edge from each dep's job to its dependent."""
    import networkx

    graph = networkx.DiGraph()
    for job in plan.jobs:
        graph.add_node(job.target, job=job)
        for owner in dep_jobs(plan, job.target):
            graph.add_edge(owner, job.target)
    return graph


def critical_path_lengths(plan: Plan, work: list[int] | None = None) -> dict[str, int]:
    """For each job (of `work`, indices in dependency order; default all), the number of
    jobs on the longest chain from it to a requested target, counting only `work`.

    The scheduler starts ready jobs with the longest chain ahead of them first.
    """
    work = range(len(plan.jobs)) if work is None else work
    chosen = set(work)
    dependents = plan.index.dependents
    lengths: dict[int, int] = {}
    for i in reversed(work):
        lengths[i] = 1 + max((lengths[d] for d in dependents[i] if d in chosen), default=0)
    return {plan.jobs[i].target: length for i, length in lengths.items()}


def to_dot(plan: Plan) -> str:
    lines = ["digraph rlmake {", "  rankdir=LR;", "  node [shape=box];"]
    for source in plan.sources:
        lines.append(f"  {json.dumps(source)} [shape=ellipse];")
    for job in plan.jobs:
        shape = "box" if job.commands else "octagon"
        lines.append(f"  {json.dumps(job.target)} [shape={shape}, "
                     f"tooltip={json.dumps(' && '.join(job.commands))}];")
        for dep in job.deps:
            lines.append(f"  {json.dumps(plan.producers.get(dep, dep))} -> {json.dumps(job.target)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> str:
    graph = to_networkx(plan)
    jobs = [{"target": job.target, "rule": job.rule, "where": str(job.where),
             "outputs": list(job.outputs), "deps": list(job.deps),
             "commands": list(job.commands), "env": dict(job.env),
             "description": job.description, "pool": job.pool, "depfile": job.depfile,
             "phony": job.phony, "always": job.always,
             "needs": list(graph.predecessors(job.target))}
            for job in plan.jobs]
    return json.dumps({"requested": list(plan.requested), "sources": list(plan.sources),
                       "jobs": jobs}, indent=2) + "\n"
