"""Running a plan: decide each job once its deps are settled, run the stale ones in
parallel (longest chain ahead first, pools respected), record what succeeded.

Early cutoff falls out of the order of work: a job's key is computed from the
digests its deps have *after* they ran, so a dep rebuilt to the same bytes
leaves its dependents cached.
"""

from __future__ import annotations

import heapq
import json
import os
import time
from typing import TYPE_CHECKING, Mapping, NamedTuple

from rlmake.errors import UnreadableFile
from rlmake.executors.base import Completion, Executor, Task
from rlmake.graph import critical_path_lengths, dirty_jobs
from rlmake.hashing import FileHasher, combined_digest, job_key
from rlmake.model import BuildOptions, Decision, Job, Outcome, Plan, Reason, ReasonKind, Status
from rlmake.reporters.base import Reporter
from rlmake.staleness import decide
from rlmake.state import JobRecord, RunRecord, StateDB

if TYPE_CHECKING:
    from rlmake.cache.artifacts import ArtifactCache

_COMMIT_EVERY_SECONDS = 0.5
# Reasons that say all there is to say: a job never built needs no other.
_ALONE = (ReasonKind.NEVER_BUILT, ReasonKind.LAST_RUN_FAILED)
_OUTPUT_TAIL_BYTES = 4000
_REMOTE_LOOKAHEAD = 8


def lookup_slots(options: BuildOptions, cache: "ArtifactCache | None") -> int:
    """How many tasks may be in flight: -j, or more when a remote cache answers most."""
    remote = cache is not None and cache.has_remote
    return options.jobs * (_REMOTE_LOOKAHEAD if remote else 1)


class _Running(NamedTuple):
    job: Job
    decision: Decision
    dep_digests: list
    before: dict                      # output path -> stat signature before the job started


class _Progress:
    # A plain class: dataclasses cost every rebuild their code generation at import.
    def __init__(self, waiting_on: dict[str, int], dependents: dict[str, list[str]]):
        self.waiting_on = waiting_on        # job -> dep jobs not yet settled
        self.dependents = dependents
        self.runnable: list = []            # heap of (-chain, order, target)
        self.decided: dict = {}             # runnable target -> (decision, dep digests)
        self.settled: list = []             # targets whose dependents may be released
        self.running: dict[str, _Running] = {}
        self.pool_use: dict[str, int] = {}
        self.stopping = False


class Scheduler:
    def __init__(self, plan: Plan, project_dir: str, executor: Executor | None,
                 reporter: Reporter, hasher: FileHasher, state: StateDB,
                 records: Mapping[str, JobRecord], execution: str, options: BuildOptions,
                 changed: set[str] | None = None,
                 depfile_readers: dict[str, tuple[str, ...]] | None = None,
                 cache: "ArtifactCache | None" = None):
        """`changed`: when an up-to-date snapshot exists, the files that changed since;
        jobs that touch none of them, directly or through a dep, are known up to date."""
        self.plan = plan
        self.project_dir = project_dir
        self.pools = plan.pools
        self.executor = executor
        self.reporter = reporter
        self.hasher = hasher
        self.state = state
        self.records = records
        self.execution = execution
        self.options = options
        self.cache = cache
        self.outcomes: dict[str, Outcome] = {}
        self._digests: dict[str, str | None] = {}   # produced paths and phony names this build
        self._would_run: set[str] = set()
        self._last_commit = time.monotonic()
        self._work: dict[str, Job] = {}
        self.dirty = None if changed is None else self._dirty(changed, depfile_readers or {})
        self.unreported = 0             # jobs known up to date that no reporter wanted to hear of
        self.depfile_deps: dict[str, tuple[str, ...]] = {}   # job -> what its depfile listed
        self._failed_last: set[str] | None = None
        self.unreadable: list[UnreadableFile] = []     # files that failed a job before it ran
        # With a remote cache most tasks in flight wait on the network, not a CPU: let more
        # start; the executor still runs at most `jobs` commands at once.
        self._slots = lookup_slots(options, cache)

    def _dirty(self, changed: set[str], depfile_readers) -> list[int]:
        touched = {target for path in changed for target in depfile_readers.get(path, ())
                   if target in self.plan.producers}
        return dirty_jobs(self.plan, changed, touched)

    # --- the main loop ------------------------------------------------------------------

    def run(self) -> list[Outcome]:
        plan = self.plan
        self.reporter.build_started(plan.count_with_commands())
        work_indices = self._settle_clean_jobs()
        work = [plan.jobs[i] for i in work_indices]
        self._work = {job.target: job for job in work}
        chain = critical_path_lengths(plan, work_indices)
        order = {job.target: index for index, job in enumerate(work)}
        progress = self._progress(work_indices)
        ready = [job.target for job in work if progress.waiting_on[job.target] == 0]
        try:
            self._consider(ready, progress, chain, order)
            while progress.running or progress.runnable:
                self._start_runnable(progress)
                if not progress.running:
                    break
                completion = self.executor.wait()
                running = self._free_slot(completion, progress)
                if completion.exit_code == 0 and not completion.error:
                    self._start_runnable(progress)  # the next job runs while we record this one
                self._finish(running, completion, progress)
                self._consider(self._released(progress), progress, chain, order)
        except KeyboardInterrupt:
            self._interrupt(progress)
            raise
        self._skip_unreached(work)
        return self._in_plan_order(work_indices)

    def _in_plan_order(self, work_indices: list[int]) -> list[Outcome]:
        position = dict(zip(self._work, work_indices))
        if not position.keys() >= self.outcomes.keys():     # clean jobs were settled too
            position = self.plan.positions()
        return sorted(self.outcomes.values(), key=lambda outcome: position[outcome.job.target])

    def _job(self, target: str) -> Job:
        """A job of this build's work by its target, else from the plan: its index of every
        target costs an edit in a 10,000-job plan a millisecond to build."""
        return self._work.get(target) or self.plan.job(target)

    def _settle_clean_jobs(self) -> list[int]:
        """Settle the jobs known up to date; the rest (indices, in dependency order) are
        the work.

        Without a reporter that lists every job, the clean ones are only counted: an
        edit in a 10,000-job project then touches just the jobs it makes stale."""
        jobs = self.plan.jobs
        if self.dirty is None:
            return list(range(len(jobs)))
        if not self.reporter.wants_every_job:
            self.unreported = self.plan.count_with_commands() - sum(
                1 for i in self.dirty if jobs[i].commands)
            return self.dirty
        dirty = set(self.dirty)
        for i, job in enumerate(jobs):
            if i not in dirty:
                self._settle(job, Status.CACHED if job.commands else Status.DONE, None)
        return self.dirty

    def _progress(self, work: list[int]) -> _Progress:
        """Who waits on whom, among the jobs to decide (settled deps do not hold anyone)."""
        jobs, dependents = self.plan.jobs, self.plan.index.dependents
        targets = {i: jobs[i].target for i in work}
        progress = _Progress(dict.fromkeys(targets.values(), 0),
                             {target: [] for target in targets.values()})
        for i, target in targets.items():
            for d in dependents[i]:
                if d in targets:
                    progress.waiting_on[targets[d]] += 1
                    progress.dependents[target].append(targets[d])
        return progress

    def _consider(self, targets, progress: _Progress, chain, order) -> None:
        """Decide each newly ready job; settle the up-to-date ones at once, queue the rest."""
        pending = list(targets)
        while pending:
            for target in pending:
                job = self._job(target)
                if progress.stopping:
                    continue
                try:
                    decision, dep_digests = self._decide(job)
                except UnreadableFile as error:
                    self.unreadable.append(error)
                    self._fail_early(job, str(error))
                    decision = None
                if decision is None:                # failed before running: a dep vanished
                    progress.stopping = progress.stopping or not self.options.keep_going
                    continue
                if decision.stale and job.commands and not self.options.dry_run:
                    heapq.heappush(progress.runnable, (-chain[target], order[target], target))
                    progress.decided[target] = (decision, dep_digests)
                else:
                    self._settle_without_running(job, decision)
                    progress.settled.append(target)
            pending = self._released(progress)

    def _released(self, progress: _Progress) -> list[str]:
        released = []
        for target in progress.settled:
            for dependent in progress.dependents[target]:
                progress.waiting_on[dependent] -= 1
                if progress.waiting_on[dependent] == 0:
                    released.append(dependent)
        progress.settled = []
        return released

    def _start_runnable(self, progress: _Progress) -> None:
        blocked = []
        while progress.runnable and len(progress.running) < self._slots \
                and not progress.stopping:
            item = heapq.heappop(progress.runnable)
            job = self._job(item[2])
            if job.pool and progress.pool_use.get(job.pool, 0) >= self.pools[job.pool]:
                blocked.append(item)
                continue
            decision, dep_digests = progress.decided.pop(job.target)
            self._start(job, decision, dep_digests, progress)
        for item in blocked:
            heapq.heappush(progress.runnable, item)

    # --- deciding -------------------------------------------------------------------------

    def _digest(self, path: str) -> str | None:
        """The content of `path` as dependents see it now, computed when first asked.

        A phony or aggregate target's content is the combination of its deps'; an
        `always` phony one changes on every build."""
        if path in self._digests:
            return self._digests[path]
        if self._is_name(path):
            job = self._job(path)
            if job.always and job.commands:
                digest = os.urandom(16).hex()
            else:
                digest = combined_digest("phony", [self._digest(dep) for dep in job.deps])
        else:
            digest = self.hasher.digest(path)
        self._digests[path] = digest
        return digest

    def _decide(self, job: Job) -> tuple[Decision | None, list]:
        if not job.commands:
            return Decision(""), []     # an aggregate runs nothing: there is nothing to decide
        dep_digests = [(dep, self._digest(dep)) for dep in job.deps]
        missing = [dep for dep, digest in dep_digests
                   if digest is None and dep not in self.plan.producers]
        if missing:
            self._fail_early(job, f"dep '{missing[0]}' does not exist")
            return None, dep_digests
        key = job_key(job.target, job.commands, job.env, job.outputs, dep_digests)
        record = self.records.get(job.target)
        if record is not None:
            self.depfile_deps[job.target] = tuple(record.depfile_deps)
        failed = record is None and self._last_run_failed(job.target)
        decision = decide(job, key, dep_digests, record, self._digest, forced=self.options.force,
                          last_run_failed=failed)
        will_change = [Reason(ReasonKind.DEP_WILL_CHANGE, dep) for dep in job.deps
                       if self.plan.producers.get(dep) in self._would_run]
        if decision.stale and decision.reasons[0].kind in _ALONE:
            return decision, dep_digests            # nothing else is worth saying
        if decision.stale or will_change:       # worth the full story: it is going to run
            decision = decide(job, key, dep_digests, record, self._digest,
                              forced=self.options.force, last_run_failed=failed,
                              all_reasons=True)
            rebuilt = {reason.path for reason in will_change}
            decision = Decision(key, (*will_change, *(
                r for r in decision.reasons
                if not (r.kind is ReasonKind.DEP_CHANGED and r.path in rebuilt))))
        return decision, dep_digests

    def _last_run_failed(self, target: str) -> bool:
        if self._failed_last is None:               # one query, for jobs never built
            self._failed_last = self.state.failed_last()
        return target in self._failed_last

    def _settle_without_running(self, job: Job, decision: Decision) -> None:
        if decision.stale:                           # only in a dry run
            self._would_run.add(job.target)
            self._settle(job, Status.WOULD_RUN, decision)
        else:
            self._settle(job, Status.CACHED if job.commands else Status.DONE, decision)

    def _settle(self, job: Job, status: Status, decision: Decision | None,
                report: bool = True) -> None:
        now = time.time()
        outcome = Outcome(job, status, decision, started=now, ended=now)
        self.outcomes[job.target] = outcome
        if job.commands and report:
            self.reporter.job_finished(outcome)

    # --- running ----------------------------------------------------------------------

    def _start(self, job: Job, decision: Decision, dep_digests, progress: _Progress) -> None:
        dirs = {os.path.dirname(os.path.join(self.project_dir, path))
                for path in (*job.outputs, *([job.depfile] if job.depfile else []))}
        cacheable = self.cache is not None and not job.always and not self.options.force
        task = Task(job.target, job.commands, self.project_dir, dict(job.env) or None,
                    tuple(sorted(dirs)), decision.key if cacheable else None, job.outputs,
                    self._file_inputs(job, dep_digests), job.depfile)
        progress.running[job.target] = _Running(job, decision, dep_digests,
                                                self._stat_outputs(job))
        if job.pool:
            progress.pool_use[job.pool] = progress.pool_use.get(job.pool, 0) + 1
        self.reporter.job_started(job, decision)
        self.executor.start(task)

    def _file_inputs(self, job: Job, dep_digests) -> tuple[tuple[str, str], ...]:
        """The files the job reads with their digests: declared deps that are files, and
        what its depfile listed last time."""
        inputs = {dep: digest for dep, digest in dep_digests
                  if digest is not None and not self._is_name(dep)}
        for dep in self.depfile_deps.get(job.target, ()):
            try:
                digest = self._digest(dep)
            except UnreadableFile:      # the job runs anyway: its command will say more
                continue
            if digest is not None:
                inputs[dep] = digest
        return tuple(inputs.items())

    def _is_name(self, path: str) -> bool:
        """A phony or aggregate target: a name, not a file."""
        owner = self.plan.producers.get(path)
        return owner == path and not self._job(owner).outputs

    def _free_slot(self, completion: Completion, progress: _Progress) -> _Running:
        running = progress.running.pop(completion.id)
        if running.job.pool:
            progress.pool_use[running.job.pool] -= 1
        return running

    def _finish(self, running: _Running, completion: Completion, progress: _Progress) -> None:
        job = running.job
        self.hasher.forget(job.outputs)
        for path in job.outputs:
            self._digests.pop(path, None)
        if completion.exit_code != 0 or completion.error:
            self._fail(running, completion, completion.error)
        else:
            depfile_deps: dict[str, str | None] = {}
            error = self._missing_output(job)
            if error is None and completion.restored_from is not None:
                depfile_deps = dict(completion.depfile_deps or {})
            elif error is None and job.depfile:
                depfile_deps, error = self._read_depfile(job)
            if error is None:
                self._succeed(running, completion, depfile_deps)
                progress.settled.append(job.target)
                return
            self._fail(running, completion, error)
        progress.stopping = progress.stopping or not self.options.keep_going

    def _missing_output(self, job: Job) -> str | None:
        for path in job.outputs:
            try:
                if self._digest(path) is None:
                    return f"the command exited 0 but did not write output '{path}'"
            except UnreadableFile as error:
                return (f"the command exited 0 but rlmake cannot read its output "
                        f"{error.quoted}: {error.problem}")
        return None

    def _read_depfile(self, job: Job) -> tuple[dict, str | None]:
        from rlmake import depfile as depfiles      # only builds with depfiles need it

        path = os.path.join(self.project_dir, job.depfile)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as stream:
                listed = depfiles.parse(stream.read())
        except FileNotFoundError:
            return {}, f"the command did not write its depfile '{job.depfile}'"
        except depfiles.DepfileError as error:
            return {}, f"malformed depfile {job.depfile}:{error.line}: {error}"
        from rlmake.paths import normalise

        self.hasher.forget([job.depfile])
        deps = {}
        for listed_path in listed:
            dep = normalise(listed_path, self.project_dir)
            try:
                deps[dep] = self.hasher.digest(dep)
            except UnreadableFile as error:
                return {}, (f"its depfile lists {error.quoted}, which rlmake cannot read: "
                            f"{error.problem}")
        return deps, None

    def _succeed(self, running: _Running, completion: Completion, depfile_deps: dict) -> None:
        job = running.job
        self.depfile_deps[job.target] = tuple(depfile_deps)
        writes = [(path, self._digest(path)) for path in job.outputs]
        status = Status.RESTORED if completion.restored_from else Status.DONE
        self._record(running, completion, status, writes, depfile_deps)
        self._report(running, completion, status)
        if status is Status.DONE and self.cache is not None and not job.always:
            self.cache.store(running.decision.key, writes, completion.output, depfile_deps)

    def _fail(self, running: _Running, completion: Completion, error: str | None) -> None:
        self._remove_changed_outputs(running)
        self._record(running, completion, Status.FAILED, [], {})
        self.depfile_deps.pop(running.job.target, None)
        self.state.forget_job(running.job.target)
        self._report(running, completion, Status.FAILED, error)

    def _fail_early(self, job: Job, error: str) -> None:
        now = time.time()
        self.outcomes[job.target] = Outcome(job, Status.FAILED, error=error, started=now, ended=now)
        self.reporter.job_finished(self.outcomes[job.target])

    def _report(self, running: _Running, completion: Completion, status: Status,
                error: str | None = None) -> None:
        outcome = Outcome(running.job, status, running.decision, completion.exit_code,
                          completion.output.decode(errors="replace"), error,
                          completion.failed_command, completion.started, completion.ended,
                          completion.restored_from)
        self.outcomes[running.job.target] = outcome
        self.reporter.job_finished(outcome)

    def _record(self, running: _Running, completion: Completion, status: Status,
                writes, depfile_deps) -> None:
        job = running.job
        inputs = {"commands": list(job.commands), "env": dict(job.env),
                  "outputs": list(job.outputs), "deps": [list(p) for p in running.dep_digests],
                  "depfile_deps": depfile_deps, "vars": dict(job.vars)}
        reason = json.dumps([r.to_json() for r in running.decision.reasons])
        record = RunRecord(self.execution, job.target, job.rule, running.decision.key,
                           status.value, reason, completion.started, completion.ended,
                           completion.exit_code, inputs,
                           completion.output[-_OUTPUT_TAIL_BYTES:].decode(errors="replace"),
                           tuple(running.dep_digests) + tuple(depfile_deps.items()),
                           tuple(writes), completion.restored_from)
        self.state.record_run(record, successful=status in (Status.DONE, Status.RESTORED))
        if time.monotonic() - self._last_commit > _COMMIT_EVERY_SECONDS:
            self.state.commit()
            self._last_commit = time.monotonic()

    # --- outputs of failed and interrupted jobs -----------------------------------------

    def _stat_outputs(self, job: Job) -> dict:
        return {path: _signature(os.path.join(self.project_dir, path)) for path in job.outputs}

    def _remove_changed_outputs(self, running: _Running) -> None:
        """Delete every output the job created or changed: it must never pass for a good one."""
        for path, before in running.before.items():
            full = os.path.join(self.project_dir, path)
            now = _signature(full)
            if now is not None and now != before:
                try:
                    os.remove(full)
                except OSError:
                    pass
        self.hasher.forget(running.before)

    def _interrupt(self, progress: _Progress) -> None:
        if self.executor is not None and progress.running:
            self.executor.cancel()
        for running in progress.running.values():
            self._remove_changed_outputs(running)
        progress.running.clear()

    def _skip_unreached(self, work) -> None:
        for job in work:
            if job.target not in self.outcomes and job.commands:
                self.outcomes[job.target] = Outcome(job, Status.SKIPPED)
                self.reporter.job_finished(self.outcomes[job.target])


def _signature(path: str):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
