"""Decisions and run records turned into sentences, for `rlmake why` and `rlmake log`.

Each answer is a tree of `Cause`s: a sentence about one target, the detail
lines under it (a command diff, a changed var), and the causes of its causes,
down to the source file that changed. The same tree serialises to JSON.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from rlmake.model import Decision, Job, Outcome, Plan, Reason, ReasonKind, Status, short
from rlmake.model import RunRecord
from rlmake.state import StateReader

MAX_DEPTH = 32


class Will(str, Enum):
    """Whether the next build runs a job: surely, only if a dep's bytes change (early
    cutoff may spare it), or not."""

    REBUILD = "rebuild"
    MAYBE = "maybe"
    NO = "no"


@dataclass
class Cause:
    target: str
    sentence: str
    details: list[str] = field(default_factory=list)
    causes: list["Cause"] = field(default_factory=list)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    will: Will | None = None        # the next build's answers only; None in a history

    def lines(self, indent: int = 0) -> list[str]:
        pad = "  " * indent
        result = [f"{pad}{self.target}: {self.sentence}"]
        result.extend(f"{pad}    {line}" for line in self.details)
        for cause in self.causes:
            result.extend(cause.lines(indent + 1))
        return result

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "?"
    today = time.strftime("%Y-%m-%d")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
    return stamp[11:] if stamp.startswith(today) else stamp


def stored_by_lines(run: RunRecord, records: StateReader) -> list[str]:
    """Where a restored run's bytes came from, as its action record said: the build that
    stored them and, when this project recorded that build running the job with the same
    key, why it ran then. Empty for a run that was not restored."""
    if run.status is not Status.RESTORED:
        return []
    source = f"restored from {run.cache_source}"
    stored_by = run.stored_by
    if stored_by is None:
        return [f"{source}: stored by an unknown build (its record does not say)"]
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(stored_by.time))
    lines = [f"{source}: stored by execution {stored_by.execution} on host {stored_by.host} "
             f"at {stamp} (rlmake {stored_by.version})"]
    then = records.ran_in(stored_by.execution, run.target, run.key)
    if then is None:
        lines.append(f"execution {stored_by.execution} is not in this project's records "
                     "(another copy of the project or another machine built it)")
    elif then.reasons:
        lines.append("it ran then because: " + ", ".join(str(r) for r in then.reasons))
    else:
        lines.append("it ran then (no reason was recorded)")
    return lines


class Explainer:
    """Answers `why` from a dry-run survey of the next build and the stored runs."""

    def __init__(self, plan: Plan, outcomes: dict[str, Outcome], records: StateReader,
                 project_dir: str, overrides: dict[str, Any]):
        self.plan = plan
        self.outcomes = outcomes
        self.records = records
        self.project_dir = project_dir
        self.overrides = overrides
        self._told: dict[tuple[str, Any], str] = {}    # what this answer has explained in full

    # --- the next build -------------------------------------------------------------------

    def next_build(self, target: str, depth: int = 0) -> Cause:
        """Why the next build will (or won't) run `target`'s job, down to the sources."""
        self._told = {}
        return self._next_build(target, depth)

    def _next_build(self, target: str, depth: int) -> Cause:
        """A job that many others depend on is explained in full once per answer, and
        named the other times: a tree that repeated it would grow exponentially."""
        told = self._told.get(("next", target))
        if told is not None:
            return Cause(target, f"{told} (see above)", will=self._will.get(target, Will.NO))
        cause = self._next_build_cause(target, depth)
        if cause.causes:
            self._told[("next", target)] = cause.sentence
        return cause

    def _next_build_cause(self, target: str, depth: int) -> Cause:
        if target not in self.plan.producers:
            return Cause(target, "a source file: no rule makes it", will=Will.NO)
        job = self.plan.job(target)
        outcome = self.outcomes.get(target)
        if not job.commands:
            return self._aggregate(job, depth)
        if outcome is None or outcome.status is Status.CACHED:
            return Cause(target, "up to date" + self._cutoff_note(target), will=Will.NO)
        if outcome.status is Status.FAILED:
            return Cause(target, f"cannot be built: {outcome.error}", will=Will.NO)
        if outcome.decision is None:        # skipped: the survey stopped at a failure first
            return Cause(target, "not reached: the next build stops at a job that cannot "
                                 "be built before it", will=Will.NO)
        reasons = list(outcome.decision.reasons)
        will = self._will[target]
        sentence = ("may be rebuilt " + _if_bytes_change([r.path or "" for r in reasons])
                    if will is Will.MAYBE
                    else "will be rebuilt because " + self._phrases(reasons, upcoming=True))
        cause = Cause(target, sentence, reasons=[r.to_json() for r in reasons], will=will)
        last = self.records.last_run(target)
        self._elaborate(cause, job, reasons, depth, old_vars=last.inputs.vars if last else None,
                        labels=("last run", "now"))
        return cause

    def _aggregate(self, job: Job, depth: int) -> Cause:
        stale = self._stale_deps(job)
        if not stale:
            return Cause(job.target, "up to date", will=Will.NO)
        cause = Cause(job.target, "will be brought up to date because "
                      + _join([f"{owner} {_VERB[self._will[owner]]} be rebuilt"
                               for owner in stale]), will=self._will[job.target])
        if depth < MAX_DEPTH:
            cause.causes = [self._next_build(owner, depth + 1) for owner in stale]
        return cause

    def _stale_deps(self, job: Job) -> list[str]:
        """The jobs among `job`'s deps that the next build will or may run (or bring up to
        date)."""
        return [owner for owner in dict.fromkeys(self.plan.producers.get(d) for d in job.deps)
                if owner and self._will[owner] is not Will.NO]

    @cached_property
    def _will(self) -> dict[str, Will]:
        """Whether the next build runs each job, or (an aggregate) any job among its deps.

        One pass in dependency order, so a chain of aggregates of any length costs no
        recursion, and a job shared by many dependents is decided once."""
        will: dict[str, Will] = {}
        for job in self.plan.jobs:
            if job.commands:
                outcome = self.outcomes.get(job.target)
                if outcome is None or outcome.status is not Status.WOULD_RUN:
                    will[job.target] = Will.NO
                elif self._only_if_deps_change(outcome.decision):
                    will[job.target] = Will.MAYBE
                else:
                    will[job.target] = Will.REBUILD
            else:
                levels = {will.get(self.plan.producers.get(dep) or "", Will.NO)
                          for dep in job.deps}
                will[job.target] = next((level for level in (Will.REBUILD, Will.MAYBE)
                                         if level in levels), Will.NO)
        return will

    def _only_if_deps_change(self, decision: Decision | None) -> bool:
        """Whether every reason is a dep the next build will rebuild, and whose bytes may
        come out the same (early cutoff): not a name that changes on every build."""
        return decision is not None and decision.stale and all(
            reason.kind is ReasonKind.DEP_WILL_CHANGE and reason.path is not None
            and not self._changes_every_build(reason.path) for reason in decision.reasons)

    def _changes_every_build(self, path: str) -> bool:
        owner = self.plan.producers.get(path)
        if owner is None:
            return False
        job = self.plan.job(owner)
        return job.always and not job.outputs

    def _cutoff_note(self, target: str) -> str:
        """For an up-to-date job: the deps rebuilt to identical bytes since its last run,
        which early cutoff kept it through (from the records)."""
        record = self.records.job_record(target)
        if record is None:
            return ""
        inputs = record.inputs
        rewrites = []
        for path, digest in [*inputs.deps, *inputs.depfile_deps.items()]:
            if digest is None or path not in self.plan.producers:
                continue
            run = self.records.writer_of(path, digest, after=record.run)
            if run is not None:
                rewrites.append(f"{path} was rebuilt to identical bytes in {run.execution} at "
                                f"{when(run.started)}")
        if not rewrites:
            return ""
        return f" ({_join(list(dict.fromkeys(rewrites)))}; {target} kept)"

    def _elaborate(self, cause: Cause, job: Job, reasons: list[Reason], depth: int,
                   old_vars: dict[str, str] | None = None, run: RunRecord | None = None,
                   labels: tuple[str, str] = ("before", "this run")) -> None:
        """Add the detail lines and the causes one level further down.

        `old_vars`: the vars the job's last run read, when the change is still to come;
        `run`: the past run being explained, whose causes must come before it.
        """
        for reason in reasons:
            if reason.kind is ReasonKind.COMMAND_CHANGED:
                cause.details.extend(_diff(reason.old or [], reason.new or [], labels))
                if old_vars is not None:
                    cause.details.extend(self._changed_vars(old_vars, dict(job.vars)))
            elif reason.kind is ReasonKind.ENV_CHANGED:
                cause.details.extend(_diff(_env_lines(reason.old), _env_lines(reason.new),
                                           labels))
                if old_vars is not None:
                    cause.details.extend(self._changed_vars(old_vars, dict(job.vars)))
            if depth >= MAX_DEPTH or not reason.path:
                continue
            owner = self.plan.producers.get(reason.path)
            if reason.kind is ReasonKind.DEP_WILL_CHANGE and owner:
                cause.causes.append(self._next_build(owner, depth + 1))
            elif reason.kind is ReasonKind.DEP_CHANGED and owner and reason.new:
                writer = self.records.writer_of(reason.path, reason.new,
                                                before=run.id if run else None)
                if writer is not None:
                    cause.causes.append(self._past_run(writer, depth + 1,
                                                       run.execution if run else None))

    def _changed_vars(self, old: dict[str, str], new: dict[str, str]) -> list[str]:
        lines = []
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                origin = " (set on the command line)" if name in self.overrides else ""
                lines.append(f"var '{name}' changed: {_value(old.get(name))} -> "
                             f"{_value(new.get(name))}{origin}")
        return lines

    def _phrases(self, reasons: list[Reason], upcoming: bool = False) -> str:
        """`upcoming`: the change is on disk now, so a source's mtime dates it."""
        return _join([self._phrase(reason, upcoming) for reason in reasons])

    def _phrase(self, reason: Reason, upcoming: bool) -> str:
        kind = reason.kind
        if kind in (ReasonKind.DEP_CHANGED, ReasonKind.DEPFILE_DEP_CHANGED) \
                and reason.path and reason.old and reason.new \
                and reason.path not in self.plan.producers:
            edited = self._mtime(reason.path) if upcoming else None
            prefix = "depfile dep " if kind is ReasonKind.DEPFILE_DEP_CHANGED else ""
            return (f"{prefix}{reason.path} changed ({short(reason.old)} -> {short(reason.new)}"
                    + (f", edited {edited})" if edited else ")"))
        if kind is ReasonKind.DEP_CHANGED and reason.path in self.plan.producers:
            return f"{reason.path} changed ({short(reason.old)} -> {short(reason.new)})"
        if kind is ReasonKind.DEP_WILL_CHANGE and upcoming and reason.path:
            owner = self.plan.producers.get(reason.path, "")
            return f"{reason.path} {_VERB[self._will.get(owner, Will.REBUILD)]} be rebuilt"
        if kind is ReasonKind.COMMAND_CHANGED:
            return "its command changed"
        if kind is ReasonKind.ENV_CHANGED:
            return "its env changed"
        if kind is ReasonKind.NEVER_BUILT:
            return "it was never built"
        if kind is ReasonKind.ALWAYS:
            return "it has always: true"
        if kind is ReasonKind.FORCED:
            return "it was forced (-B)"
        return str(reason)

    def _mtime(self, path: str) -> str | None:
        try:
            return when(os.stat(os.path.join(self.project_dir, path)).st_mtime)
        except OSError:
            return None

    # --- the last build that ran it ---------------------------------------------------------

    def last_build(self, target: str) -> Cause:
        run = self.records.last_run(target)
        if run is None:
            if target not in self.plan.producers:
                return Cause(target, "no recorded job wrote it")
            job = self.plan.job(target)
            return Cause(target, "has no command" if not job.commands else "no build has run it yet")
        self._told = {}
        return self._past_run(run, 0, None, first=True)

    def _past_run(self, run: RunRecord, depth: int, parent_execution: str | None,
                  first: bool = False) -> Cause:
        """As `_next_build`: a run that caused many others is explained in full once."""
        told = self._told.get(("past", run.id))
        if told is not None:
            return Cause(run.target, f"{told} (see above)")
        cause = self._past_run_cause(run, depth, parent_execution, first)
        if cause.causes:
            self._told[("past", run.id)] = cause.sentence
        return cause

    def _past_run_cause(self, run: RunRecord, depth: int, parent_execution: str | None,
                        first: bool) -> Cause:
        reasons = list(run.reasons)
        verb = {Status.DONE: "rebuilt", Status.FAILED: "failed",
                Status.RESTORED: f"restored from {run.cache_source}"}.get(run.status,
                                                                         run.status.value)
        if first:
            verb = "last " + ("built" if run.status is Status.DONE else verb)
        if run.same_outputs and run.status is Status.DONE:
            verb += " to identical bytes"
        where = "" if run.execution == parent_execution else \
            f" in {run.execution} at {when(run.started)}"
        sentence = f"{verb}{where}"
        if reasons:
            sentence += " because " + self._phrases(reasons)
        cause = Cause(run.target, sentence, reasons=[r.to_json() for r in reasons])
        cause.details.extend(stored_by_lines(run, self.records))
        job = self.plan.job(run.target) if run.target in self.plan.producers else None
        if job is not None:
            self._elaborate(cause, job, reasons, depth, run=run)
        return cause


_VERB = {Will.REBUILD: "will", Will.MAYBE: "may", Will.NO: "will not"}


def _if_bytes_change(paths: list[str]) -> str:
    paths = list(dict.fromkeys(paths))
    if len(paths) == 1:
        return f"(if {paths[0]}'s bytes change)"
    return f"(if the bytes of {', '.join(paths[:-1])} or {paths[-1]} change)"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _diff(old: list[str], new: list[str], labels: tuple[str, str]) -> list[str]:
    return list(difflib.unified_diff(old, new, *labels, lineterm="", n=1))


def _env_lines(env: dict | None) -> list[str]:
    return [f"{name}={value}" for name, value in sorted((env or {}).items())]


def _value(encoded: str | None) -> str:
    if encoded is None:
        return "(unset)"
    value = json.loads(encoded)
    return repr(value) if isinstance(value, str) else json.dumps(value)
