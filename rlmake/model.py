"""Plain, frozen data that every layer shares: what a Rulesfile says, and the jobs it expands to.

NamedTuples, not dataclasses: every command imports this module, and a frozen dataclass
costs ten times a NamedTuple to create (its methods are generated and compiled at
import), besides the import of dataclasses itself (inspect, ast, dis, tokenize), a
quarter of a small project's no-op build."""

from __future__ import annotations

from enum import Enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Optional, overload

if TYPE_CHECKING:
    from rlmake.uptodate import Seen

# A directory rlmake made: its inode, and the generation the file system gave that inode
# (None where it keeps none). ext4 gives a freed inode number to the very next mkdir, so
# the number alone would take a directory someone made in place of ours for ours.
DirIdentity = tuple[int, Optional[int]]


class Location(NamedTuple):
    """Where something was written: a file as the user named it, and a 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


class RuleSpec(NamedTuple):
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
    order_only: tuple[str, ...] = ()
    key_lines: dict[str, int] = {}      # key -> its line; never changed once made

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key, self.where.line)


class Rulesfile(NamedTuple):
    """A loaded Rulesfile with its includes merged in."""

    path: str                       # the top file, as the user would name it
    project_dir: str                # absolute
    vars: dict[str, Any]
    default: tuple[str, ...] | None
    pools: dict[str, int]
    rules: tuple[RuleSpec, ...]
    files: tuple[str, ...]          # every file read, absolute: the top file, then includes
    top_rule_count: int             # how many of `rules` come from the top file
    default_line: int | None = None     # where `default` is written


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
    # targets built before it whose content is not part of its key (make's `|`); none of deps
    order_only: tuple[str, ...] = ()

    @property
    def is_aggregate(self) -> bool:
        """No command: it only gathers its deps and writes nothing."""
        return not self.commands

    def label(self) -> str:
        return self.description or (self.commands[0] if self.commands else self.target)


class JobList(Sequence[Job]):
    """A plan's jobs in dependency order, with each job's place found by its target.

    A stored plan (plancache) subclasses it to decode each job only when read."""

    def __init__(self, jobs: Sequence[Job]):
        self._jobs = tuple(jobs)
        self._positions: Mapping[str, int] | None = None

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | Sequence[Job]:
        return self._jobs[index]

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs)

    def positions(self) -> Mapping[str, int]:
        """Every job's place, built on first use: a no-op build never asks."""
        if self._positions is None:
            self._positions = self._targets_to_places()
        return self._positions

    def _targets_to_places(self) -> Mapping[str, int]:
        return {job.target: i for i, job in enumerate(self._jobs)}

    def count_with_commands(self) -> int:
        return sum(1 for job in self._jobs if job.commands)


class PlanIndex(NamedTuple):
    """Who reads what, for finding the jobs a changed file makes stale."""

    readers: Mapping[str, tuple[int, ...]]  # path or phony name -> jobs that read or write it
    dependents: Sequence[tuple[int, ...]]   # job -> jobs that read what it makes, or wait
                                             # for it (order-only)
    always: tuple[int, ...]                 # jobs with always: true
    outputs: Sequence[str]                  # every file the plan writes

    @classmethod
    def of(cls, jobs: Sequence[Job]) -> "PlanIndex":
        # Written for speed (a 100,000-job plan's index is made on every fresh plan): one
        # dict lookup per edge, and a set only where a job's dependents may repeat.
        readers: dict[str, list[int]] = {}
        waiters: dict[str, list[int]] = {}      # order-only: they wait, but read nothing
        found_readers = readers.get
        for i, job in enumerate(jobs):
            for path in job.deps + job.outputs:
                found = found_readers(path)
                if found is None:
                    readers[path] = [i]
                else:
                    found.append(i)
            for path in job.order_only:
                waiters.setdefault(path, []).append(i)
        dependents = []
        for own, job in enumerate(jobs):
            made = (job.target, *job.outputs) if job.outputs else (job.target,)
            found = [reader for path in made for reader in readers.get(path, ())]
            if waiters:
                found.extend(waiter for path in made for waiter in waiters.get(path, ()))
            # a job's targets are its own: it is its only reader that shares its target
            dependents.append(tuple(sorted(set(found).difference((own,)))))
        return cls({path: tuple(found) for path, found in readers.items()}, tuple(dependents),
                   tuple(i for i, job in enumerate(jobs) if job.always),
                   tuple(path for job in jobs for path in job.outputs))


PlanBody = tuple[JobList, Mapping[str, str], Sequence[str], PlanIndex]


class Plan:
    """The jobs that the requested targets need, each after the jobs it depends on,
    with the settings a build of them needs: what `expand` produces and the plan
    cache stores.

    A stored plan is made by `Plan.deferred`: its body (jobs, producers, sources and
    index) is decoded when first read. A no-op build reads only the key and the count
    of jobs with commands, and the body of a 100,000-job plan is most of its time and
    memory. Never changed once made."""

    __slots__ = ("requested", "pools", "hash_setting", "key", "_count", "_body", "_decode",
                 "_seen")

    def __init__(self, requested: tuple[str, ...], jobs: JobList, producers: dict[str, str],
                 sources: tuple[str, ...], index: PlanIndex, pools: dict[str, int] | None = None,
                 hash_setting: str | None = None, key: str = ""):
        self.requested = requested
        self.pools = {} if pools is None else pools
        self.hash_setting = hash_setting        # the Rulesfile var `rlmake_hash`, if set
        self.key = key          # digest of its content (plancache); "" when not stored
        self._count: int | None = None
        self._body: PlanBody | None = (jobs, producers, sources, index)
        self._decode: Callable[[], PlanBody] | None = None
        self._seen: Seen | None = None

    @classmethod
    def deferred(cls, requested: tuple[str, ...], pools: dict[str, int],
                 hash_setting: str | None, key: str, count_with_commands: int,
                 decode: Callable[[], PlanBody], seen: Seen | None = None) -> "Plan":
        """`seen`: the stat of its sources as the stored plan's check took them, for
        the first up-to-date check of this plan (`take_seen`)."""
        plan = cls.__new__(cls)
        plan.requested, plan.pools, plan.hash_setting, plan.key = \
            requested, pools, hash_setting, key
        plan._count, plan._body, plan._decode = count_with_commands, None, decode
        plan._seen = seen
        return plan

    def with_key(self, key: str) -> "Plan":
        plan = Plan.deferred(self.requested, self.pools, self.hash_setting, key,
                             self.count_with_commands(), self._loaded)
        plan._body = self._body
        return plan

    def take_seen(self) -> Seen | None:
        """The stats `deferred` was given, once: a later check of the same plan must
        look at the files again, not trust what was seen before it."""
        seen, self._seen = self._seen, None
        return seen

    def _loaded(self) -> PlanBody:
        if self._body is None:
            assert self._decode is not None
            self._body, self._decode = self._decode(), None
        return self._body

    @property
    def jobs(self) -> JobList:
        return self._loaded()[0]

    @property
    def producers(self) -> Mapping[str, str]:
        """Every output path and phony name -> the target of the job that makes it."""
        return self._loaded()[1]

    @property
    def sources(self) -> Sequence[str]:
        """The deps no rule makes, in the order first needed."""
        return self._loaded()[2]

    @property
    def index(self) -> PlanIndex:
        return self._loaded()[3]

    def job(self, target: str) -> Job:
        return self.jobs[self.index_of(target)]

    def index_of(self, target: str) -> int:
        """A job's place in `jobs`."""
        return self.jobs.positions()[target]

    def count_with_commands(self) -> int:
        if self._count is None:
            self._count = self.jobs.count_with_commands()
        return self._count


class BuildOptions(NamedTuple):
    """How to run a build: the command line's -j, -k, -B and -n."""

    jobs: int | None = None         # None: as many as the executor runs at once (the CPUs
                                    # here, a Dask cluster's threads); the project decides
    keep_going: bool = False
    force: bool = False
    dry_run: bool = False


class ReasonKind(Enum):
    """Why a job must run; the order of the members is the order they are checked."""

    NEVER_BUILT = "never built"
    LAST_RUN_FAILED = "its last run failed"
    LAST_RUN_STOPPED = "its last run was stopped before it ended"
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


class Reason(NamedTuple):
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
        return self.kind.value      # not `kind`: narrowed by the tests above, it loses its type

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.name, "path": self.path, "old": self.old, "new": self.new}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Reason":
        return cls(ReasonKind[data["kind"]], data.get("path"), data.get("old"), data.get("new"))


class Decision(NamedTuple):
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
    INTERRUPTED = "interrupted"     # running or waiting to run when the build was interrupted
    LOST = "lost"           # running when the executor was lost: its result is unknown
    WOULD_RUN = "would run"  # -n


class ExecutionStatus(Enum):
    """How one build (an execution) ended."""

    RUNNING = "running"     # still running, or killed before it could say
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    EXECUTOR_FAILED = "executor failed"     # the executor was lost; recorded as failed


class JobInputs(NamedTuple):
    """What one run of a job read: the parts of its key, kept to explain a change."""

    commands: tuple[str, ...]
    env: dict[str, str]
    outputs: tuple[str, ...]
    deps: tuple[tuple[str, str | None], ...]
    depfile_deps: dict[str, str | None]
    vars: dict[str, str]


class JobRecord(NamedTuple):
    """The last successful run of a job, as staleness needs it."""

    target: str
    run: int
    key: str
    outputs: dict[str, str]                 # path -> digest it wrote
    depfile_deps: dict[str, str | None]
    read_inputs: Callable[[], JobInputs]    # decoded on demand: only explaining a change needs them

    @property
    def inputs(self) -> JobInputs:
        return self.read_inputs()


class StoredBy(NamedTuple):
    """Who stored the action record a job was restored from, as the record says. Read from
    a store, so trusted for nothing but display."""

    execution: str          # the id of the build that stored it
    host: str
    time: float
    version: str            # of rlmake

    def to_json(self) -> dict[str, str | float]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: object) -> "StoredBy | None":
        """From what `to_json` wrote; None for anything else."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["execution"]), str(data["host"]), float(data["time"]),
                       str(data["version"]))
        except (KeyError, TypeError, ValueError):
            return None


class RunRecord(NamedTuple):
    """One run of a job as it is stored and read back: what ran, why, what it read and wrote."""

    execution: str
    target: str
    rule: str
    key: str
    status: Status
    reasons: tuple[Reason, ...]
    started: float
    ended: float
    exit_code: int | None
    inputs: JobInputs
    output_tail: str = ""
    reads: tuple[tuple[str, str | None], ...] = ()
    writes: tuple[tuple[str, str | None], ...] = ()
    cache_source: str | None = None     # RESTORED: the store it came from
    side_files: tuple[tuple[str, str | None], ...] = ()   # written besides the outputs (the
                                        # depfile): recorded for `clean`, not outputs
    id: int | None = None               # its row, once stored
    same_outputs: bool | None = None    # wrote what the job's previous good run wrote (None: no such run)
    stored_by: StoredBy | None = None   # RESTORED: who stored it (None: the record did not say)


class Outcome(NamedTuple):
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
    kept_by: tuple[str, ...] = ()       # CACHED: deps this build rebuilt to identical bytes
    looked_up: tuple[float, float] | None = None    # when the cache was asked, and missed

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)
