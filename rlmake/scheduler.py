"""The build loop: decide each job once its deps are settled, run the stale ones in
parallel (longest chain ahead first, pools respected), record what succeeded.

Early cutoff falls out of the order of work: a job's key is computed from the
digests its deps have *after* they ran, so a dep rebuilt to the same bytes
leaves its dependents cached. The parts live beside it: the decision in
scan.py, the waiting line in readyqueue.py, the records in recorder.py, and
what a run did to its files in jobfiles.py.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from rlmake import jobfiles
from rlmake.clock import Clock
from rlmake.errors import ExecutorLost, UnreadableFile
from rlmake.executors.base import Completion, Executor, Task
from rlmake.model import (BuildOptions, Decision, Job, JobInputs, Outcome, Plan, RunRecord,
                          Status)
from rlmake.readyqueue import ReadyQueue, critical_path_lengths
from rlmake.recorder import OUTPUT_TAIL_BYTES, Recorder
from rlmake.reporters.base import Reporter
from rlmake.scan import DepDigests, DependencyScan

if TYPE_CHECKING:
    from rlmake.cache.artifacts import ArtifactCache

_REMOTE_LOOKAHEAD = 8


def lookup_slots(options: BuildOptions, cache: "ArtifactCache | None") -> int:
    """How many tasks may be in flight: -j, or more when a remote cache answers most.
    A real build's -j is known by now (the project asks the executor when none was
    given); a dry run, which starts nothing, may leave it unset."""
    remote = cache is not None and cache.has_remote
    return (options.jobs or 1) * (_REMOTE_LOOKAHEAD if remote else 1)


class _Ready(NamedTuple):
    decision: Decision
    dep_digests: DepDigests


class _Running(NamedTuple):
    job: Job
    decision: Decision
    dep_digests: DepDigests
    started: jobfiles.Watch
    began: float                # clock time when it was handed to the executor
    succeeded_before: int       # how many jobs of this build had succeeded when it started
    made_dirs: list[str]        # output directories missing when it started


class Scheduler:
    def __init__(self, plan: Plan, scan: DependencyScan, reporter: Reporter,
                 options: BuildOptions, clock: Clock, *, executor: Executor | None = None,
                 recorder: Recorder | None = None, dirty: list[int] | None = None,
                 cache: "ArtifactCache | None" = None):
        """Without an executor and a recorder (a dry run), stale jobs are settled as
        WOULD_RUN. `dirty`: when an up-to-date snapshot exists, the only jobs (indices in
        dependency order) that can be stale; the rest are known up to date."""
        self.plan = plan
        self.project_dir = scan.hasher.project_dir
        self.scan = scan
        self.reporter = reporter
        self.options = options
        self.clock = clock
        self.executor = executor
        self.recorder = recorder
        self.dirty = dirty
        self.cache = cache
        self._unfinished: set[str] | None = None    # recorder.unfinished(), once asked
        self.outcomes: dict[str, Outcome] = {}
        self.unreported = 0             # jobs known up to date that no reporter wanted to hear of
        self._work: dict[str, Job] = {}
        self._places: dict[str, int] = {}      # the work's targets -> their places in the plan
        self._waiting_on: dict[str, int] = {}
        self._dependents: dict[str, list[str]] = {}
        self._settled: list[str] = []   # targets whose dependents may be released
        self._running: dict[str, _Running] = {}
        self._queue: ReadyQueue[_Ready] = ReadyQueue(dict, {}, plan.pools)
        self._stopping = False
        # each output a job of this build made: (how many had succeeded before, its stat then)
        self._made: dict[str, tuple[int, jobfiles.Signature | None]] = {}
        self._successes = 0
        self._dirs_seen: set[str] = set()      # output directories looked at (jobfiles.missing_dirs)
        self.unreadable: list[UnreadableFile] = []     # files that failed a job before it ran
        self._identical: set[str] = set()   # outputs rebuilt to the bytes they had before
        # With a remote cache most tasks in flight wait on the network, not a CPU: let more
        # start; the executor still runs at most `jobs` commands at once.
        self._slots = lookup_slots(options, cache)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> list[Outcome]:
        """Every job's outcome, in plan order. On Ctrl-C (or any exception), stops the
        running jobs, settles the unfinished ones as interrupted and raises it again: no
        command may outlive a build that stopped. When the executor is lost, the jobs it
        was running are settled as lost, the rest as skipped, and ExecutorLost is raised
        again: nothing more is started on an executor that can run nothing."""
        self.reporter.build_started(self.plan.count_with_commands())
        work = self._settle_clean_jobs()
        self._prepare(work)
        try:
            self._consider([t for t in self._work if self._waiting_on[t] == 0])
            while self._running or self._queue:
                self._start_ready()
                if not self._running:
                    break
                completion = self._next_completion()
                running = self._running.pop(completion.id)
                self._queue.release(running.job)
                if completion.exit_code == 0 and not completion.error:
                    self._start_ready()     # the next job runs while we record this one
                self._finish(running, completion)
                self._consider(self._released())
        except ExecutorLost as lost:
            self._lose(str(lost))
            raise
        except BaseException:           # Ctrl-C, or a fault of rlmake's own: stop what runs
            self._interrupt()
            raise
        self._settle_unreached(Status.SKIPPED)
        return self.outcomes_in_order()

    def _next_completion(self) -> Completion:
        """Wait for a running job to end. Jobs run only in a real build, which has an
        executor; its wait without a timeout returns only once a job has ended."""
        if self.executor is None:
            raise RuntimeError("jobs are running without an executor")
        completion = self.executor.wait()
        if completion is None:
            raise RuntimeError("the executor's wait without a timeout returned no job")
        return completion

    def outcomes_in_order(self) -> list[Outcome]:
        # The work's own places when only it has outcomes: an edit in a 10,000-job plan
        # would spend a millisecond indexing every target of the plan.
        position = self._places if self._places.keys() >= self.outcomes.keys() \
            else self.plan.jobs.positions()
        return sorted(self.outcomes.values(), key=lambda outcome: position[outcome.job.target])

    def _settle_clean_jobs(self) -> list[int]:
        """Settle the jobs known up to date; the rest (indices, in dependency order) are
        the work. Without a reporter that lists every job, the clean ones are only
        counted: an edit in a 10,000-job project then touches just the jobs it dirties."""
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

    def _prepare(self, work: list[int]) -> None:
        """Who waits on whom among the work (settled jobs hold no one), and the queue.

        A job waits for its deps' jobs and its order-only deps' jobs alike (both are
        its dependents in the plan's index); one that fails leaves it unreleased, so
        it ends SKIPPED."""
        jobs, dependents = self.plan.jobs, self.plan.index.dependents
        targets = {i: jobs[i].target for i in work}
        self._work = {target: jobs[i] for i, target in targets.items()}
        self._places = {target: i for i, target in targets.items()}
        self._waiting_on = dict.fromkeys(targets.values(), 0)
        self._dependents = {target: [] for target in targets.values()}
        for i, target in targets.items():
            for d in dependents[i]:
                if d in targets:
                    self._waiting_on[targets[d]] += 1
                    self._dependents[target].append(targets[d])
        order = {target: place for place, target in enumerate(targets.values())}
        self._queue = ReadyQueue(lambda: critical_path_lengths(self.plan, work,
                                                               self._last_seconds(work)),
                                 order, self.plan.pools)

    def _last_seconds(self, work: list[int]) -> dict[str, float]:
        """What each job of the work took in its last run (read once something must run)."""
        if self.recorder is None:
            return {}
        jobs = self.plan.jobs
        return self.recorder.last_seconds([jobs[i].target for i in work if jobs[i].commands])

    def _consider(self, targets: list[str]) -> None:
        """Decide each newly ready job; settle the up-to-date ones at once, queue the rest."""
        while targets:
            for target in targets:
                if self._stopping:
                    return
                job = self._work[target]
                try:
                    decision, dep_digests = self.scan.decide(job)
                except UnreadableFile as error:
                    self.unreadable.append(error)
                    self._fail_early(job, str(error))
                    continue
                if isinstance(decision, str):       # failed before running: a dep vanished
                    self._fail_early(job, decision)
                elif decision.stale and job.commands and self.executor is not None:
                    self._queue.push(job, _Ready(decision, dep_digests))
                elif decision.stale:
                    self.scan.would_run.add(job.target)
                    self._settle(job, Status.WOULD_RUN, decision)
                    self._settled.append(target)
                else:
                    self._settle(job, Status.CACHED if job.commands else Status.DONE, decision,
                                 self._kept_by(job))
                    self._settled.append(target)
            targets = self._released()

    def _kept_by(self, job: Job) -> tuple[str, ...]:
        """The deps of an up-to-date job that this build rebuilt to identical bytes: the
        early cutoffs that kept it."""
        if not self._identical:
            return ()
        reads = (*job.deps, *self.scan.depfile_deps.get(job.target, ()))
        return tuple(dep for dep in dict.fromkeys(reads) if dep in self._identical)

    def _released(self) -> list[str]:
        released = []
        for target in self._settled:
            for dependent in self._dependents[target]:
                self._waiting_on[dependent] -= 1
                if self._waiting_on[dependent] == 0:
                    released.append(dependent)
        self._settled = []
        return released

    def _start_ready(self) -> None:
        while len(self._running) < self._slots and not self._stopping:
            found = self._queue.pop()
            if found is None:
                return
            job, ready = found
            self._start(job, ready.decision, ready.dep_digests)

    # --- running --------------------------------------------------------------------------

    def _start(self, job: Job, decision: Decision, dep_digests: DepDigests) -> None:
        if self.executor is None:
            raise RuntimeError("a dry run cannot start a job")
        inputs = self.scan.file_inputs(job, dep_digests)
        written = (*job.outputs, job.depfile) if job.depfile else job.outputs
        dirs = {os.path.dirname(os.path.join(self.project_dir, path)) for path in written}
        missing = jobfiles.missing_dirs(self.project_dir, written, self._dirs_seen)
        cacheable = self.cache is not None and not job.always and not self.options.force \
            and not (self.scan.records.get(job.target) is None
                     and self._was_unfinished(job.target))
        task = Task(job.target, job.commands, self.project_dir, dict(job.env) or None,
                    tuple(sorted(dirs)), decision.key if cacheable else None, job.outputs,
                    tuple(inputs.items()), job.depfile)
        started = jobfiles.watch(self.project_dir, job.outputs, inputs,
                                 self.scan.hasher.hashed_as)
        self._running[job.target] = _Running(job, decision, dep_digests, started,
                                             self.clock.time(), self._successes, missing)
        self.reporter.job_started(job, decision)
        self.executor.start(task)

    def _finish(self, running: _Running, completion: Completion) -> None:
        self.scan.forget(running.job.outputs)
        if running.made_dirs and self.recorder is not None:     # made by the executor or
            # a restore, by now
            self.recorder.made_dirs(jobfiles.identified_dirs(self.project_dir,
                                                             running.made_dirs))
        if completion.exit_code != 0 or completion.error:
            self._fail(running, completion, completion.error)
            return
        problem, depfile_deps = self._check_success(running, completion)
        if problem is not None:
            self._fail(running, completion, problem)
            return
        self._succeed(running, completion, depfile_deps)
        self._settled.append(running.job.target)

    def _check_success(self, running: _Running, completion: Completion
                       ) -> tuple[str | None, dict[str, str | None]]:
        """Why a job that exited 0 still failed (or None), and what its depfile listed."""
        job = running.job
        try:
            problem = jobfiles.unwritten_output(
                self.project_dir, running.started, self.scan.digest,
                lambda path, digest: self.recorder is not None
                and self.recorder.wrote(job.target, path, digest))
        except UnreadableFile as error:
            return (f"the command exited 0 but rlmake cannot read its output "
                    f"{error.quoted}: {error.problem}"), {}
        depfile_deps: dict[str, str | None] = {}
        if problem is None and completion.restored_from is not None:
            depfile_deps = dict(completion.depfile_deps or {})
        elif problem is None and job.depfile:
            depfile_deps, problem = self._read_depfile(job.depfile)
            if problem is None:
                problem = jobfiles.written_while_running(
                    self.project_dir, running.started, depfile_deps,
                    lambda path: self._made_before(running, path))
        if problem is None:
            problem = jobfiles.changed_input(self.project_dir, running.started, self._reread)
        return problem, depfile_deps

    def _reread(self, path: str) -> str | None:
        self.scan.forget([path])
        try:
            return self.scan.digest(path)
        except UnreadableFile:
            return None                 # unreadable now: it changed, as far as the job knows

    def _read_depfile(self, depfile: str) -> tuple[dict[str, str | None], str | None]:
        from rlmake import depfile as depfiles      # only builds with depfiles need it
        from rlmake.paths import normalise

        path = os.path.join(self.project_dir, depfile)
        try:
            listed = depfiles.parse(depfiles.read(path))
        except FileNotFoundError:
            return {}, f"the command did not write its depfile '{depfile}'"
        except OSError as error:
            return {}, f"cannot read its depfile '{depfile}': {error.strerror or error}"
        except depfiles.DepfileError as error:
            return {}, f"malformed depfile {depfile}:{error.line}: {error}"
        deps: dict[str, str | None] = {}
        for listed_path in listed:
            dep = normalise(listed_path, self.project_dir)
            try:
                self.scan.forget([dep])
                deps[dep] = self.scan.digest(dep)
            except UnreadableFile as error:
                return {}, (f"its depfile lists {error.quoted}, which rlmake cannot read: "
                            f"{error.problem}")
        return deps, None

    def _made_before(self, running: _Running, path: str) -> bool:
        """Whether a job that succeeded before `running` started wrote `path`, and no one
        has touched it since."""
        made = self._made.get(path)
        return made is not None and made[0] < running.succeeded_before \
            and jobfiles.signature(os.path.join(self.project_dir, path)) == made[1]

    def _succeed(self, running: _Running, completion: Completion,
                 depfile_deps: dict[str, str | None]) -> None:
        job = running.job
        writes = tuple((path, self.scan.digest(path)) for path in job.outputs)
        hashed_as = self.scan.hasher.hashed_as
        for path, digest in writes:
            # The stat each output had when it was hashed after the command ended (its
            # digest was taken by _check_success): what a later _made_before compares
            # with. Without one (--hash fast keeps none, a restore), a stat now.
            made = None if digest is None else hashed_as(path, digest)
            self._made[path] = (self._successes, made if made is not None else
                                jobfiles.signature(os.path.join(self.project_dir, path)))
        self._successes += 1
        self.scan.depfile_deps[job.target] = tuple(depfile_deps)
        status = Status.RESTORED if completion.restored_from else Status.DONE
        previous = self.scan.records.get(job.target)
        same = None if previous is None else previous.outputs == dict(writes)
        if same:
            self._identical.update(job.outputs)
        if previous is None and self.recorder is not None and self._was_unfinished(job.target):
            self.recorder.finished(job.target)      # first: committed with the record
        self._record(running, completion, status, writes, depfile_deps, same,
                     self._depfile_written(job) if status is Status.DONE else ())
        self._report(running, completion, status)
        if status is Status.DONE and self.cache is not None and not job.always:
            self.cache.store(running.decision.key, writes, completion.output, depfile_deps)

    def _was_unfinished(self, target: str) -> bool:
        """Whether the job's last run failed or was stopped unfinished, with no run to
        success since (then it has no record): it must run, not be restored. Asked only of
        jobs without a record, so most builds never read the list."""
        if self._unfinished is None:
            self._unfinished = self.recorder.unfinished() if self.recorder is not None else set()
        return target in self._unfinished

    def _fail(self, running: _Running, completion: Completion, error: str | None) -> None:
        self.scan.forget(jobfiles.remove_changed_outputs(self.project_dir, running.started))
        self._record(running, completion, Status.FAILED, (), {})
        self.scan.depfile_deps.pop(running.job.target, None)
        self._report(running, completion, Status.FAILED, error)
        self._stopping = self._stopping or not self.options.keep_going

    def _fail_early(self, job: Job, error: str) -> None:
        now = self.clock.time()
        self.outcomes[job.target] = Outcome(job, Status.FAILED, error=error, started=now,
                                            ended=now)
        self.reporter.job_finished(self.outcomes[job.target])
        self._stopping = self._stopping or not self.options.keep_going

    def _depfile_written(self, job: Job) -> tuple[tuple[str, str | None], ...]:
        """The depfile as the command left it, recorded so that `clean` may remove it."""
        if job.depfile is None or job.depfile in job.outputs:
            return ()
        try:
            return ((job.depfile, self.scan.digest(job.depfile)),)
        except UnreadableFile:
            return ()

    def _record(self, running: _Running, completion: Completion, status: Status,
                writes: tuple[tuple[str, str | None], ...],
                depfile_deps: dict[str, str | None], same_outputs: bool | None = None,
                side_files: tuple[tuple[str, str | None], ...] = ()) -> None:
        if self.recorder is None:
            return
        job = running.job
        deps = tuple(running.dep_digests)
        inputs = JobInputs(job.commands, dict(job.env), job.outputs, deps, depfile_deps,
                           dict(job.vars))
        output = completion.output
        tail = output[-OUTPUT_TAIL_BYTES:].decode(errors="replace") if output else ""
        self.recorder.record(RunRecord(
            self.recorder.execution, job.target, job.rule, running.decision.key, status,
            running.decision.reasons, completion.started, completion.ended,
            completion.exit_code, inputs, tail,
            (*deps, *depfile_deps.items()) if depfile_deps else deps, writes,
            completion.restored_from, side_files=side_files, same_outputs=same_outputs,
            stored_by=completion.stored_by))

    def _report(self, running: _Running, completion: Completion, status: Status,
                error: str | None = None) -> None:
        output = completion.output
        outcome = Outcome(running.job, status, running.decision, completion.exit_code,
                          output.decode(errors="replace") if output else "", error,
                          completion.failed_command, completion.started, completion.ended,
                          completion.restored_from, looked_up=completion.looked_up)
        self.outcomes[running.job.target] = outcome
        self.reporter.job_finished(outcome)

    def _settle(self, job: Job, status: Status, decision: Decision | None,
                kept_by: tuple[str, ...] = ()) -> None:
        now = self.clock.time()
        outcome = Outcome(job, status, decision, started=now, ended=now, kept_by=kept_by)
        self.outcomes[job.target] = outcome
        if job.commands:
            self.reporter.job_finished(outcome)

    # --- stopping -------------------------------------------------------------------------

    def _interrupt(self) -> None:
        """Ctrl-C: stop what runs, remove what it half wrote, settle the rest as interrupted."""
        if self.executor is not None and self._running:
            self.executor.cancel()
        for running in self._running.values():
            self.scan.forget(jobfiles.remove_changed_outputs(self.project_dir, running.started))
        self._running.clear()
        self._queue.drain()
        self._settle_unreached(Status.INTERRUPTED)

    def _lose(self, error: str) -> None:
        """The executor is gone: what it was running has no result. Treated as an
        interrupted job's, what each wrote is removed and nothing is recorded; the jobs
        not started are skipped. There is nothing left to cancel."""
        now = self.clock.time()
        for running in self._running.values():
            self.scan.forget(jobfiles.remove_changed_outputs(self.project_dir, running.started))
            outcome = Outcome(running.job, Status.LOST, running.decision, error=error,
                              started=running.began, ended=now)
            self.outcomes[running.job.target] = outcome
            self.reporter.job_finished(outcome)
        self._running.clear()
        self._queue.drain()
        self._settle_unreached(Status.SKIPPED)

    def _settle_unreached(self, status: Status) -> None:
        for job in self._work.values():
            if job.target not in self.outcomes and job.commands:
                self.outcomes[job.target] = Outcome(job, status)
                self.reporter.job_finished(self.outcomes[job.target])
