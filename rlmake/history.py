"""`rlmake log`: what the recorded builds did, which files they touched, where a file came from."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from rlmake.explain import stored_by_lines, when
from rlmake.model import short
from rlmake.model import RunRecord
from rlmake.reporters.console import kept_sentence
from rlmake.state import Execution, StateReader

MAX_DEPTH = 64


def execution_json(execution: Execution) -> dict[str, Any]:
    data = execution._asdict()
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
            "same_outputs": run.same_outputs, "duration": run.ended - run.started,
            "stored_by": run.stored_by.to_json() if run.stored_by else None}


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
                     kept: Sequence[tuple[str, list[str]]] = (),
                     records: StateReader | None = None) -> list[str]:
    """`kept`: the jobs it kept up to date because a dep came out identical (early cutoff);
    `records`: to say where restored runs' bytes came from."""
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
        if records is not None:
            lines.extend(f"      {line}" for line in stored_by_lines(run, records))
    for target, deps in kept:
        lines.append(f"  {target:<{width}}  {'kept':<6} {'':>8}  {kept_sentence(target, deps)}")
    return lines


def files_table(summary) -> list[str]:
    width = max([len("PATH")] + [len(path) for path, _, _, _ in summary])
    lines = [f"{'PATH':<{width}}  MODE  DIGEST    WHEN"]
    for path, mode, digest, time_ in summary:
        lines.append(f"{path:<{width}}  {mode:<4}  {short(digest):<8}  {when(time_)}")
    return lines


FOLD_NAMES = 3       # source files named in a folded depfile line


@dataclass
class Origin:
    """Where the current content of a file came from, back to the sources.

    A file (path and content) reached again is not followed again: the node that
    refers back has `ref` set and the `id` of the node shown in full, so a graph of
    many diamonds (objects sharing headers) gives an answer as long as its edges."""

    path: str
    digest: str | None
    id: int = 0
    made_by: dict[str, Any] | None = None       # rule, target, commands, execution, when, took
    note: str = ""
    inputs: list["Origin"] = field(default_factory=list)
    from_depfile: bool = False
    ref: bool = False                           # shown in full at node `id`
    rebuilt: dict[str, Any] | None = None       # a later run of its job wrote the same bytes
    hidden_inputs: int = 0                      # inputs beyond --depth, not followed

    def to_json(self) -> dict[str, Any]:
        if self.ref:
            return {"ref": self.id, "path": self.path, "digest": self.digest,
                    "from_depfile": self.from_depfile}
        data = {name: value for name, value in asdict(self).items()
                if name not in ("inputs", "ref")}
        data["inputs"] = [child.to_json() for child in self.inputs]
        return data


def provenance(path: str, digest: str | None, records: StateReader,
               depth: int | None = None) -> Origin:
    """The tree of runs that produced `digest` at `path`, following each input's digest
    to the run that wrote it before the run that read it, `depth` levels down (None: all)."""
    return _Tracer(records, depth).origin(path, digest, 0, None)


class _Tracer:
    def __init__(self, records: StateReader, depth: int | None):
        self.records = records
        self.depth = MAX_DEPTH if depth is None else min(depth, MAX_DEPTH)
        self.shown: dict[tuple[str, str | None], Origin] = {}  # file and content -> its node

    def origin(self, path: str, digest: str | None, depth: int, before: int | None,
               from_depfile: bool = False) -> Origin:
        seen = self.shown.get((path, digest))
        if seen is not None:
            return Origin(path, digest, seen.id, note=seen.note if seen.note == "source" else "",
                          ref=True, from_depfile=from_depfile)
        node = Origin(path, digest, len(self.shown) + 1, from_depfile=from_depfile)
        self.shown[(path, digest)] = node
        if digest is None:
            node.note = "missing"
            return node
        run = self.records.writer_of(path, digest, before)
        if run is None:
            node.note = "source" if depth else \
                "no recorded job wrote this content (a source, or edited by hand)"
            return node
        node.made_by = {"rule": run.rule, "target": run.target,
                        "commands": list(run.inputs.commands), "execution": run.execution,
                        "when": run.started, "took": run.ended - run.started,
                        "restored": stored_by_lines(run, self.records)}
        again = self.records.writer_of(path, digest, after=run.id or 0)
        if again is not None:
            node.rebuilt = {"execution": again.execution, "when": again.started}
        inputs = _inputs_of(run)
        if depth >= self.depth:
            node.hidden_inputs = len(inputs)
            return node
        node.inputs = [self.origin(dep, dep_digest, depth + 1, run.id, listed)
                       for dep, dep_digest, listed in inputs]
        return node


def _inputs_of(run: RunRecord) -> list[tuple[str, str | None, bool]]:
    """(path, digest, from the depfile) of what the run read; a depfile usually lists the
    declared source again, which is one input, not two."""
    declared = [(dep, digest, False) for dep, digest in run.inputs.deps]
    named = {dep for dep, _, _ in declared}
    return declared + [(dep, digest, True) for dep, digest in run.inputs.depfile_deps.items()
                       if dep not in named]


def provenance_lines(origin: Origin, fold: bool = True) -> list[str]:
    """The tree as text, each file once; `fold`: a job's depfile inputs that are sources
    go on one line (their names are many and alike: the headers of a C file)."""
    lines = [_origin_line(origin)]
    lines.extend(_made_by_lines(origin, "    "))
    _tree(origin.inputs, "", lines, fold)
    return lines


def _tree(children: list[Origin], prefix: str, lines: list[str], fold: bool) -> None:
    folded = [child for child in children if fold and _foldable(child)]
    entries: list[Origin | str] = [child for child in children if child not in folded]
    if folded:
        names = [child.path for child in folded]
        shown = ", ".join(names[:FOLD_NAMES]) + (", ..." if len(names) > FOLD_NAMES else "")
        entries.append(f"+ {len(folded)} source file{'s' if len(folded) > 1 else ''} from "
                       f"its depfile: {shown} (--depth N lists them)")
    for index, entry in enumerate(entries):
        last = index == len(entries) - 1
        branch, inner = ("└── ", prefix + "    ") if last else ("├── ", prefix + "│   ")
        if isinstance(entry, str):
            lines.append(prefix + branch + entry)
            continue
        lines.append(prefix + branch + _origin_line(entry))
        has_more = bool(entry.inputs) or bool(entry.hidden_inputs)
        lines.extend(_made_by_lines(entry, inner + ("│   " if has_more else "    ")))
        _tree(entry.inputs, inner, lines, fold)
        if entry.hidden_inputs and not entry.ref:
            lines.append(f"{inner}└── ... {entry.hidden_inputs} input"
                         f"{'s' if entry.hidden_inputs > 1 else ''} below this depth")


def _foldable(origin: Origin) -> bool:
    """A depfile input that no job made: a source, whose line says nothing but its name."""
    return origin.from_depfile and origin.note == "source"


def _origin_line(origin: Origin) -> str:
    text = f"{origin.path} {short(origin.digest)}"
    note = "(see above)" if origin.ref else origin.note
    if origin.from_depfile and not origin.ref:
        note = (note + " (from the depfile)").strip()
    return f"{text}  {note}" if note else text


def _made_by_lines(origin: Origin, prefix: str) -> list[str]:
    made = origin.made_by
    if not made or origin.ref:
        return []
    line = (f"{prefix}made by rule '{made['rule']}' in {made['execution']} at "
            f"{when(made['when'])} ({made['took']:.2f}s)")
    if origin.rebuilt:
        line += (f"; rebuilt to identical bytes in {origin.rebuilt['execution']} at "
                 f"{when(origin.rebuilt['when'])}")
    return [line, *(f"{prefix}{told}" for told in made["restored"]),
            *(f"{prefix}$ {command}" for command in made["commands"])]


def _duration(execution: Execution) -> float | None:
    return None if execution.ended is None else execution.ended - execution.started

