"""The dependency scan: what each dep holds now, and whether each job must run.

One scan serves a build, `build -n` and `why`: the scheduler asks it about each
job once the job's deps are settled, so that a dep rebuilt to the same bytes
leaves its dependents cached (early cutoff).
"""

from __future__ import annotations

import os
from typing import Callable, Collection, Iterable, Mapping, Protocol

from rlmake.errors import UnreadableFile
from rlmake.hashing import FileHasher, combined_digest, job_key
from rlmake.model import Decision, Job, JobRecord, Plan, Reason, ReasonKind
from rlmake.staleness import decide

# Reasons that say all there is to say: a job never built needs no other.
_ALONE = (ReasonKind.NEVER_BUILT, ReasonKind.LAST_RUN_FAILED, ReasonKind.LAST_RUN_STOPPED)
# Reasons about a dep that "will be rebuilt" says better.
_SAID_BY_WILL_CHANGE = (ReasonKind.DEP_CHANGED, ReasonKind.DEPFILE_DEP_CHANGED)

DepDigests = list[tuple[str, "str | None"]]
# A dry run's decisions for a job with no record (shared: a Decision never changes)
_NO_RECORD = {kind: Decision("", (Reason(kind),)) for kind in _ALONE}


class JobRecords(Protocol):
    """Each job's last successful run by target: a dict, or records read on demand."""

    def get(self, target: str, /) -> JobRecord | None: ...


class DependencyScan:
    def __init__(self, plan: Plan, hasher: FileHasher, records: JobRecords,
                 unfinished: Callable[[], Mapping[str, ReasonKind]], force: bool = False,
                 dry_run: bool = False, seen_files: Collection[str] = ()):
        """`records`: each job's last successful run; `unfinished()`: how the last run
        ended of each job that has not run to success since, LAST_RUN_FAILED or
        LAST_RUN_STOPPED (asked once, only if a job has no record). `dry_run`: nothing
        will run, be stored or be looked up in a cache, so a job never built needs no key
        and its deps need not be read (a fresh tree's dry run reads no source).
        `seen_files`: paths this command found to be regular files a moment ago (while
        expanding the plan), which a dry run need not look at again."""
        self.dry_run = dry_run
        self.seen_files = seen_files
        self.plan = plan
        self.hasher = hasher
        self.records = records
        self._unfinished_query = unfinished
        self._unfinished: Mapping[str, ReasonKind] | None = None
        self.force = force
        self.would_run: set[str] = set()            # stale jobs of a dry run
        self.depfile_deps: dict[str, tuple[str, ...]] = {}  # job -> what its depfile listed
        self._digests: dict[str, str | None] = {}   # paths and names, as seen this build
        self._names: dict[str, bool] = {}           # path -> whether is_name said so

    # --- what deps hold -------------------------------------------------------------------

    def is_name(self, path: str) -> bool:
        """A phony or aggregate target: a name, not a file. (Asked of most paths two or
        three times in a build, answered once: a plan never changes.)"""
        known = self._names.get(path)
        if known is None:
            owner = self.plan.producers.get(path)
            known = self._names[path] = owner == path and not self.plan.job(owner).outputs
        return known

    def digest(self, path: str) -> str | None:
        """The content of `path` as dependents see it now, computed when first asked.

        A phony or aggregate target's content is the combination of its deps'; an
        `always` phony one changes on every build. Chains of names are followed with a
        stack of our own, not recursion: a chain may be thousands long."""
        if path in self._digests:
            return self._digests[path]
        if not self.is_name(path):      # a file: most paths asked about
            digest = self._digests[path] = self.hasher.digest(path)
            return digest
        stack = [path]
        while stack:
            top = stack[-1]
            if top in self._digests:
                stack.pop()
                continue
            if not self.is_name(top):
                self._digests[top] = self.hasher.digest(top)
                stack.pop()
                continue
            job = self.plan.job(top)
            if job.always and job.commands:
                self._digests[top] = os.urandom(16).hex()
                stack.pop()
                continue
            unknown = [dep for dep in job.deps if dep not in self._digests and dep != top]
            if unknown:
                stack.extend(unknown)
                continue
            self._digests[top] = combined_digest("phony", [self._digests.get(dep)
                                                           for dep in job.deps])
            stack.pop()
        return self._digests[path]

    def forget(self, paths: Iterable[str]) -> None:
        """These files were (re)written: read them afresh when next asked."""
        self.hasher.forget(paths)
        for path in paths:
            self._digests.pop(path, None)

    # --- deciding -------------------------------------------------------------------------

    def decide(self, job: Job) -> tuple[Decision | str, DepDigests]:
        """Whether `job` must run and why, with its deps' digests; or an error that fails
        it before it runs (a dep vanished)."""
        if not job.commands:
            # an aggregate runs nothing, but in a dry run its content changes with a dep that
            # would run: its dependents must hear of it as they would of that dep
            if any(self.plan.producers.get(dep) in self.would_run for dep in job.deps):
                self.would_run.add(job.target)
            return Decision(""), []
        if self.dry_run and self.records.get(job.target) is None:
            return self._never_built(job), []
        dep_digests = [(dep, self.digest(dep)) for dep in job.deps]
        missing = [dep for dep, digest in dep_digests
                   if digest is None and dep not in self.plan.producers]
        if missing:
            return f"dep '{missing[0]}' does not exist", dep_digests
        key = job_key(job.target, job.commands, job.env, job.outputs, dep_digests)
        record = self.records.get(job.target)
        if record is not None:
            self.depfile_deps[job.target] = tuple(record.depfile_deps)
        unfinished = self._how_unfinished(job.target) if record is None else None
        decision = decide(job, key, dep_digests, record, self.digest, forced=self.force,
                          unfinished=unfinished)
        will_change = self._will_change(job, record)
        if decision.stale and decision.reasons[0].kind in _ALONE:
            return decision, dep_digests            # nothing else is worth saying
        if decision.stale or will_change:       # worth the full story: it is going to run
            decision = decide(job, key, dep_digests, record, self.digest, forced=self.force,
                              unfinished=unfinished, all_reasons=True)
            rebuilt = {reason.path for reason in will_change}
            decision = Decision(key, (*will_change, *(
                r for r in decision.reasons
                if not (r.kind in _SAID_BY_WILL_CHANGE and r.path in rebuilt))))
        return decision, dep_digests

    def _never_built(self, job: Job) -> Decision | str:
        """A dry run's decision for a job with no record: the one reason `decide` would
        give, or the error of a missing dep, found by looking at each file dep (raising
        what reading it would raise) rather than reading it. A dep that a job of this dry
        run would make is not looked at: a real build reads it only once that job ran."""
        producers, would_run, seen = self.plan.producers, self.would_run, self.seen_files
        jobs = self.plan.jobs
        positions = jobs.positions()
        missing = None
        for dep in job.deps:
            maker = producers.get(dep)
            if maker is None:
                if dep not in seen and not self.hasher.exists(dep) and missing is None:
                    missing = dep
            elif maker == dep and not jobs[positions[maker]].outputs:   # is_name(dep)
                self.digest(dep)            # an aggregate: what its deps hold now
            elif maker not in would_run:
                self.hasher.exists(dep)
        if missing is not None:
            return f"dep '{missing}' does not exist"
        return _NO_RECORD[self._how_unfinished(job.target) or ReasonKind.NEVER_BUILT]

    def _will_change(self, job: Job, record: JobRecord | None) -> list[Reason]:
        """In a dry run, the deps that a job to run first makes: declared ones, and those
        its depfile listed (a generated header that an order-only dep makes first).
        Order-only deps themselves are never a reason."""
        if not self.would_run:      # a real build's case: nothing is known to run first
            return []
        listed = record.depfile_deps if record is not None else {}
        return [Reason(ReasonKind.DEP_WILL_CHANGE, dep)
                for dep in dict.fromkeys((*job.deps, *listed))
                if self.plan.producers.get(dep) in self.would_run]

    def _how_unfinished(self, target: str) -> ReasonKind | None:
        if self._unfinished is None:
            self._unfinished = self._unfinished_query()
        return self._unfinished.get(target)

    def file_inputs(self, job: Job, dep_digests: DepDigests) -> dict[str, str]:
        """The files the job reads with their digests: declared deps that are files, and
        what its depfile listed last time."""
        inputs = {dep: digest for dep, digest in dep_digests
                  if digest is not None and not self.is_name(dep)}
        for dep in self.depfile_deps.get(job.target, ()):
            try:
                digest = self.digest(dep)
            except UnreadableFile:      # the job runs anyway: its command will say more
                continue
            if digest is not None:
                inputs[dep] = digest
        return inputs
