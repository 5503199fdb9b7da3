"""The job graph: a networkx DiGraph of jobs, and the queries the rest of rlmake asks of it.

This is the only module that imports networkx, and only `rlmake graph` and
cycle reports need it: a build never imports this module.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rlmake.model import Plan


if TYPE_CHECKING:
    import networkx


def dep_jobs(plan: Plan, target: str) -> list[str]:
    """The jobs whose outputs `target`'s job reads, each once, in dep order."""
    return _owners(plan, plan.job(target).deps)


def order_only_jobs(plan: Plan, target: str) -> list[str]:
    """The jobs `target`'s job only waits for: its order-only deps' jobs that make none of
    its deps (an edge that is both is a dep edge)."""
    job = plan.job(target)
    real = set(_owners(plan, job.deps))
    return [owner for owner in _owners(plan, job.order_only) if owner not in real]


def _owners(plan: Plan, paths: tuple[str, ...]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        owner = plan.producers.get(path)
        if owner is not None:
            seen.setdefault(owner)
    return list(seen)


def to_networkx(plan: Plan) -> "networkx.DiGraph":
    """Jobs as nodes (with their Job as `job`), an edge from each dep's job to its dependent;
    an edge a job only waits on has `order_only=True`."""
    import networkx

    graph = networkx.DiGraph()
    for job in plan.jobs:
        graph.add_node(job.target, job=job)
        for owner in dep_jobs(plan, job.target):
            graph.add_edge(owner, job.target, order_only=False)
        for owner in order_only_jobs(plan, job.target):
            graph.add_edge(owner, job.target, order_only=True)
    return graph


def to_dot(plan: Plan) -> str:
    """Order-only edges are dashed: the job waits for them but does not read them."""
    lines = ["digraph rlmake {", "  rankdir=LR;", "  node [shape=box];"]
    for source in plan.sources:
        lines.append(f"  {json.dumps(source)} [shape=ellipse];")
    for job in plan.jobs:
        shape = "box" if job.commands else "octagon"
        lines.append(f"  {json.dumps(job.target)} [shape={shape}, "
                     f"tooltip={json.dumps(' && '.join(job.commands))}];")
        for dep in job.deps:
            lines.append(f"  {json.dumps(plan.producers.get(dep, dep))} -> {json.dumps(job.target)};")
        real = {plan.producers.get(dep, dep) for dep in job.deps}
        for dep in job.order_only:
            if plan.producers.get(dep, dep) not in real:
                lines.append(f"  {json.dumps(plan.producers.get(dep, dep))} -> "
                             f"{json.dumps(job.target)} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> str:
    graph = to_networkx(plan)
    jobs = [{"target": job.target, "rule": job.rule, "where": str(job.where),
             "outputs": list(job.outputs), "deps": list(job.deps),
             "order_only": list(job.order_only),
             "commands": list(job.commands), "env": dict(job.env),
             "description": job.description, "pool": job.pool, "depfile": job.depfile,
             "phony": job.phony, "always": job.always,
             "needs": [owner for owner in graph.predecessors(job.target)
                       if not graph.edges[owner, job.target]["order_only"]],
             "waits_for": [owner for owner in graph.predecessors(job.target)
                           if graph.edges[owner, job.target]["order_only"]]}
            for job in plan.jobs]
    return json.dumps({"requested": list(plan.requested), "sources": list(plan.sources),
                       "jobs": jobs}, indent=2) + "\n"
