"""`rlmake log`: what the recorded builds did, which files they touched, where a file came from."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from rlmake.explain import when
from rlmake.model import short
from rlmake.model import RunRecord
from rlmake.reporters.console import kept_sentence
from rlmake.state import Execution, StateReader

MAX_DEPTH = 64


def execution_json(execution: Execution) -> dict[str, Any]:
    data = asdict(execution)
    data["status"] = execution.status.value
    data["duration"] = _duration(execution)
    return data


def run_json(run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "execution": run.execution, "target": run.target, "rule": run.rule,
            "key": run.key, "status": run.status.value,
            "reasons": [reason.to_json() for reason in run.reasons], "started": run.started,
            "ended": run.ended, "exit_code": run.exit_code,
            "inputs": {**run.inputs._asdict(), "deps": [list(p) for p in run.inputs.deps]},
            "output_tail": run.output_tail, "cache_source": run.cache_source,
            "same_outputs": run.same_outputs, "duration": run.ended - run.started}


def kept_json(kept: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    return [{"target": target, "identical_deps": deps} for target, deps in kept]


def executions_table(executions: list[Execution]) -> list[str]:
    header = f"{'EXEC':<8}  {'STARTED':<19}  {'TOOK':>8}  {'RAN':>5} {'CACHED':>6} " \
             f"{'RESTORED':>8} {'FAILED':>6}  {'STATUS':<11} COMMAND"
    lines = [header]
    for e in executions:
        took = _duration(e)
        lines.append(f"{e.id:<8}  {when(e.started):<19}  "
                     f"{(f'{took:.2f}s' if took is not None else '-'):>8}  "
                     f"{e.ran:>5} {e.cached:>6} {e.restored:>8} {e.failed:>6}  {e.status.value:<11} "
                     f"{shlex.join(e.argv)}")
    return lines


def execution_detail(execution: Execution, runs: list[RunRecord],
                     kept: list[tuple[str, list[str]]] = ()) -> list[str]:
    """`kept`: the jobs it kept up to date because a dep came out identical (early cutoff)."""
    took = _duration(execution)
    lines = [f"execution {execution.id}: {shlex.join(execution.argv)}",
             f"  started {when(execution.started)}"
             + (f", took {took:.2f}s" if took is not None else "")
             + f", {execution.status.value}: {execution.ran} ran, {execution.cached} cached, "
               f"{execution.restored} restored, {execution.failed} failed"]
    if not runs:
        lines.append("  no job ran")
        return lines
    width = max(len(target) for target in [*(run.target for run in runs),
                                            *(target for target, _ in kept)])
    for run in runs:
        reasons = ", ".join(str(reason) for reason in run.reasons)
        if run.same_outputs:
            reasons += "; rebuilt to identical bytes"
        lines.append(f"  {run.target:<{width}}  {run.status.value:<6} {run.ended - run.started:7.2f}s  "
                     f"{reasons}")
    for target, deps in kept:
        lines.append(f"  {target:<{width}}  {'kept':<6} {'':>8}  {kept_sentence(target, deps)}")
    return lines


def files_table(summary) -> list[str]:
    width = max([len("PATH")] + [len(path) for path, _, _, _ in summary])
    lines = [f"{'PATH':<{width}}  MODE  DIGEST    WHEN"]
    for path, mode, digest, time_ in summary:
        lines.append(f"{path:<{width}}  {mode:<4}  {short(digest):<8}  {when(time_)}")
    return lines


@dataclass
class Origin:
    """Where the current content of a file came from, back to the sources."""

    path: str
    digest: str | None
    made_by: dict[str, Any] | None = None       # rule, target, commands, execution, when, took
    note: str = ""
    inputs: list["Origin"] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def provenance(path: str, digest: str | None, records: StateReader) -> Origin:
    """The tree of runs that produced `digest` at `path`, following each input's digest
    to the run that wrote it before the run that read it."""
    return _origin(path, digest, records, depth=0, seen=set(), before=None)


def _origin(path: str, digest: str | None, records: StateReader, depth: int, seen: set,
            before: int | None) -> Origin:
    if digest is None:
        return Origin(path, None, note="missing")
    run = records.writer_of(path, digest, before)
    if run is None:
        return Origin(path, digest, note="source" if depth else
                      "no recorded job wrote this content (a source, or edited by hand)")
    origin = Origin(path, digest, made_by={
        "rule": run.rule, "target": run.target, "commands": list(run.inputs.commands),
        "execution": run.execution, "when": run.started, "took": run.ended - run.started})
    if (path, digest) in seen or depth >= MAX_DEPTH:
        origin.note = "(shown above)"
        return origin
    seen.add((path, digest))
    for dep, dep_digest in run.inputs.deps:
        origin.inputs.append(_origin(dep, dep_digest, records, depth + 1, seen, run.id))
    for dep, dep_digest in run.inputs.depfile_deps.items():
        child = _origin(dep, dep_digest, records, depth + 1, seen, run.id)
        child.note = (child.note + " (from the depfile)").strip()
        origin.inputs.append(child)
    return origin


def provenance_lines(origin: Origin) -> list[str]:
    lines = [_origin_line(origin)]
    lines.extend(_made_by_lines(origin, "    "))
    _tree(origin.inputs, "", lines)
    return lines


def _tree(children: list[Origin], prefix: str, lines: list[str]) -> None:
    for index, child in enumerate(children):
        last = index == len(children) - 1
        lines.append(prefix + ("└── " if last else "├── ") + _origin_line(child))
        inner = prefix + ("    " if last else "│   ")
        lines.extend(_made_by_lines(child, inner + ("    " if not child.inputs else "│   ")))
        _tree(child.inputs, inner, lines)


def _origin_line(origin: Origin) -> str:
    text = f"{origin.path} {short(origin.digest)}"
    return f"{text}  {origin.note}" if origin.note else text


def _made_by_lines(origin: Origin, prefix: str) -> list[str]:
    made = origin.made_by
    if not made or origin.note == "(shown above)":
        return []
    lines = [f"{prefix}made by rule '{made['rule']}' in {made['execution']} at "
             f"{when(made['when'])} ({made['took']:.2f}s)"]
    lines.extend(f"{prefix}$ {command}" for command in made["commands"])
    return lines


def _duration(execution: Execution) -> float | None:
    return None if execution.ended is None else execution.ended - execution.started

