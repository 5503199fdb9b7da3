"""Plain, frozen data that every layer shares: what a Rulesfile says, and the jobs it expands to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Location:
    """Where something was written: a file as the user named it, and a 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class RuleSpec:
    """One rule as written, its templates not yet rendered."""

    key: str
    where: Location
    deps: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    phony: bool = False
    always: bool = False
    env: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    pool: str | None = None
    depfile: str | None = None
    foreach: tuple[tuple[str, Any], ...] = ()
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key, self.where.line)


@dataclass(frozen=True)
class Rulesfile:
    """A loaded Rulesfile with its includes merged in."""

    path: str                       # the top file, as the user would name it
    project_dir: str                # absolute
    vars: dict[str, Any]
    default: tuple[str, ...] | None
    pools: dict[str, int]
    rules: tuple[RuleSpec, ...]
    files: tuple[str, ...]          # every file read, absolute: the top file, then includes
    top_rule_count: int             # how many of `rules` come from the top file


class Job(NamedTuple):
    """One rule made for one target: the unit that is hashed, cached and run.

    A NamedTuple rather than a dataclass: a stored plan of 10,000 jobs is
    rebuilt on every no-op build, and tuples are built ten times faster."""

    target: str                     # the job's id: its first target
    rule: str                       # the rule's key as written
    where: Location
    outputs: tuple[str, ...]        # files it writes; empty for phony and aggregate jobs
    deps: tuple[str, ...]
    commands: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    pool: str | None = None
    depfile: str | None = None
    phony: bool = False
    always: bool = False
    vars: tuple[tuple[str, str], ...] = ()   # vars its templates read, as JSON; not in its key

    @property
    def is_aggregate(self) -> bool:
        """No command: it only gathers its deps and writes nothing."""
        return not self.commands

    def label(self) -> str:
        return self.description or (self.commands[0] if self.commands else self.target)


@dataclass(frozen=True)
class Plan:
    """The jobs that the requested targets need, each after the jobs it depends on,
    with the settings a build of them needs: what `expand` produces and the plan
    cache stores."""

    requested: tuple[str, ...]
    jobs: tuple[Job, ...]
    producers: dict[str, str]       # every output path and phony name -> the job's target
    sources: tuple[str, ...]        # deps no rule makes, in the order first needed
    pools: dict[str, int] = field(default_factory=dict)
    hash_setting: str | None = None     # the Rulesfile var `rlmake_hash`, if set
    key: str = ""                       # digest of its content (plancache); "" when not stored

    def job(self, target: str) -> Job:
        return self.jobs[self.index_of(target)]

    def index_of(self, target: str) -> int:
        """A job's place in `jobs`."""
        return self.positions()[target]

    def positions(self) -> dict[str, int]:
        """Every job's place in `jobs` (a stored plan answers without decoding its jobs)."""
        positions = self.__dict__.get("_positions")
        if positions is None:
            known = getattr(self.jobs, "positions", None)
            positions = known() if known else {job.target: i for i, job in enumerate(self.jobs)}
            object.__setattr__(self, "_positions", positions)
        return positions

    def count_with_commands(self) -> int:
        """How many jobs run commands (a stored plan counts without decoding its jobs)."""
        counted = getattr(self.jobs, "count_with_commands", None)
        return counted() if counted else sum(1 for job in self.jobs if job.commands)

    @property
    def index(self) -> "PlanIndex":
        """Who reads what, for finding the jobs a changed file makes stale."""
        index = self.__dict__.get("_index")
        if index is None:
            index = PlanIndex.of(self)
            object.__setattr__(self, "_index", index)
        return index


class PlanIndex(NamedTuple):
    readers: dict[str, tuple[int, ...]]     # path or phony name -> jobs that read or write it
    dependents: tuple[tuple[int, ...], ...]  # job -> jobs that read what it makes
    always: tuple[int, ...]                 # jobs with always: true
    outputs: tuple[str, ...]                # every file the plan writes

    @classmethod
    def of(cls, plan: "Plan") -> "PlanIndex":
        readers: dict[str, list[int]] = {}
        for i, job in enumerate(plan.jobs):
            for path in (*job.deps, *job.outputs):
                readers.setdefault(path, []).append(i)
        dependents = []
        for job in plan.jobs:
            made = (job.target, *job.outputs)
            dependents.append(tuple(sorted({reader for path in made
                                            for reader in readers.get(path, ())
                                            if plan.jobs[reader].target != job.target})))
        return cls({path: tuple(jobs) for path, jobs in readers.items()}, tuple(dependents),
                   tuple(i for i, job in enumerate(plan.jobs) if job.always),
                   tuple(path for job in plan.jobs for path in job.outputs))


@dataclass(frozen=True)
class BuildOptions:
    """How to run a build: the command line's -j, -k, -B and -n."""

    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    force: bool = False
    dry_run: bool = False


class ReasonKind(Enum):
    """Why a job must run; the order of the members is the order they are checked."""

    NEVER_BUILT = "never built"
    LAST_RUN_FAILED = "its last run failed"
    FORCED = "forced (-B)"
    ALWAYS = "always: true"
    COMMAND_CHANGED = "command changed"
    ENV_CHANGED = "env changed"
    OUTPUT_LIST_CHANGED = "output list changed"
    DEP_LIST_CHANGED = "dep list changed"
    DEP_CHANGED = "dep changed"
    DEP_WILL_CHANGE = "dep will be rebuilt"
    DEPFILE_DEP_CHANGED = "depfile dep changed"
    OUTPUT_MISSING = "output missing"
    OUTPUT_EDITED = "output differs from what the last run wrote"
    INPUTS_CHANGED = "inputs changed"


@dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    path: str | None = None
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        kind = self.kind
        if kind in (ReasonKind.DEP_CHANGED, ReasonKind.DEPFILE_DEP_CHANGED):
            if self.new is None:
                return f"{self.path} is missing"
            if self.old is None:
                return f"{self.path} is new"
            return f"{self.path} changed ({short(self.old)} -> {short(self.new)})"
        if kind is ReasonKind.DEP_WILL_CHANGE:
            return f"{self.path} will be rebuilt"
        if kind is ReasonKind.OUTPUT_MISSING:
            return f"output {self.path} is missing"
        if kind is ReasonKind.OUTPUT_EDITED:
            return f"output {self.path} was changed since the last run wrote it"
        if kind is ReasonKind.DEP_LIST_CHANGED:
            return f"dep list changed ({', '.join(self.old)} -> {', '.join(self.new)})"
        return kind.value

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.name, "path": self.path, "old": self.old, "new": self.new}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Reason":
        return cls(ReasonKind[data["kind"]], data.get("path"), data.get("old"), data.get("new"))


@dataclass(frozen=True)
class Decision:
    """Whether a job must run, with the reasons found (the first only, unless all were asked)."""

    key: str
    reasons: tuple[Reason, ...] = ()

    @property
    def stale(self) -> bool:
        return bool(self.reasons)


def short(digest: str | None) -> str:
    """A digest as people read it."""
    return "none" if digest is None else digest[:8]


class Status(Enum):
    """Where a job ended up in one build."""

    DONE = "done"           # its command ran and succeeded
    RESTORED = "restored"   # its outputs came from the artifact cache; nothing ran
    CACHED = "cached"       # up to date; nothing ran
    FAILED = "failed"
    SKIPPED = "skipped"     # not run because a job it needs failed or the build stopped
    WOULD_RUN = "would run"  # -n


@dataclass(frozen=True)
class Outcome:
    job: Job
    status: Status
    decision: Decision | None = None
    exit_code: int | None = None
    output: str = ""
    error: str | None = None
    failed_command: str | None = None
    started: float = 0.0
    ended: float = 0.0
    cache_source: str | None = None     # RESTORED: the store it came from

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)
