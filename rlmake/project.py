"""The public Python API: a project directory, its Rulesfile, and what can be done with it.

Imports of the heavier layers (YAML, Jinja2, expansion, explanations) happen
inside the methods that need them: a no-op build with a stored plan never
loads them.
"""

from __future__ import annotations

import contextlib
import os
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable

from rlmake import buildconfig, plancache
from rlmake.buildconfig import BuildConfig
from rlmake.clock import Clock, SystemClock
from rlmake.config import Config, load_config
from rlmake.errors import BuildFailed, Interrupted, RlmakeError
from rlmake.executors import make_executor
from rlmake.executors.base import Executor
from rlmake.hashing import FileHasher, digest_file
from rlmake.locate import find_rulesfile
from rlmake.executors.leftovers import stop_leftovers
from rlmake.lock import ProjectLock
from rlmake.model import (BuildOptions, ExecutionStatus, Outcome, Plan, Rulesfile,
                          Status)
from rlmake.paths import normalise
from rlmake.reporters.base import Reporter, SilentReporter
from rlmake.state import CacheUse, MemoOnDemand, RecordsOnDemand, StateDB
from rlmake.uptodate import Freshness, Snapshot, capture, freshness, renew

if TYPE_CHECKING:
    from rlmake.cache.artifacts import ArtifactCache
    from rlmake.rules.expand import Expander
    from rlmake.scan import DependencyScan
    from rlmake.explain import Cause
    from rlmake.history import Origin


class Project:
    """A Rulesfile found from `directory` (make's -C) or named by `file` (-f)."""

    def __init__(self, directory: str = ".", file: str | None = None,
                 overrides: dict[str, Any] | None = None, use_plan_cache: bool = True):
        self.path = find_rulesfile(os.path.abspath(directory), file)
        self.directory = os.path.dirname(self.path)
        self.state_dir = os.path.join(self.directory, ".rlmake")
        self.overrides = dict(overrides or {})
        self.use_plan_cache = use_plan_cache

    # --- from Rulesfile to plan -----------------------------------------------------------

    @cached_property
    def rulesfile(self) -> Rulesfile:
        from rlmake.rules import rulesfile

        return rulesfile.load(self.path)

    @cached_property
    def expander(self) -> "Expander":
        from rlmake.rules.expand import Expander

        return Expander(self.rulesfile, self.overrides)

    def plan(self, targets: Iterable[str] = ()) -> Plan:
        """The jobs `targets` need (none: the default targets); a stored plan when valid."""
        targets = list(targets)
        name = plancache.entry_name(self.path, targets, self.overrides)
        if self.use_plan_cache:
            stored = plancache.load(self.state_dir, name, self.directory)
            if stored is not None:
                return stored
        expander = self.expander
        requested = expander.check_requested(targets) if targets else expander.default_targets()
        plan = expander.plan(requested)
        if self.use_plan_cache:
            inputs = plancache.Inputs(
                files=tuple((path, digest_file(path)) for path in self.rulesfile.files),
                globs=tuple(expander.templates.globs_read.items()),
                probes=tuple(expander.probes.items()))
            plan = plancache.save(self.state_dir, name, plan, inputs)
        return plan

    @cached_property
    def config(self) -> Config:
        return load_config(self.directory)

    def build_config(self, options: BuildOptions | None = None, **flags) -> BuildConfig:
        """This project's settings for a build: `flags` (buildconfig.resolve's keywords)
        over the environment over rlmake.toml."""
        return buildconfig.resolve(self.config, options or BuildOptions(), **flags)

    # --- building -------------------------------------------------------------------------

    def build(self, targets: Iterable[str], config: BuildConfig, reporter: Reporter, *,
              executor: Executor | None = None, clock: Clock | None = None) -> list[Outcome]:
        """Bring the targets up to date; raises BuildFailed if a command failed.

        `executor`: where commands run (default: as `config` says); `clock`: the time
        the engine sees. Tests pass both to run builds in-process."""
        plan = self.plan(targets)               # every Rulesfile error comes before any command
        mode = config.hash_mode_for(plan.hash_setting)
        clock = clock or SystemClock()
        if config.options.dry_run:
            outcomes = self._survey(plan, config.options, reporter, mode, clock)
            reporter.build_finished(outcomes, 0.0)
            return outcomes
        lock = ProjectLock(self.state_dir)
        lock.acquire(config.wait, reporter.warning)
        try:
            stop_leftovers(self.state_dir, reporter.warning)
            state = StateDB(self.state_dir)
            try:
                return self._run(plan, config, reporter, mode, state, executor, clock)
            finally:
                state.close()
        finally:
            lock.release()

    def _run(self, plan: Plan, config: BuildConfig, reporter: Reporter, mode: str,
             state: StateDB, executor: Executor | None, clock: Clock) -> list[Outcome]:
        started = clock.time()
        execution = os.urandom(4).hex()
        fresh = self._freshness(plan, state, mode, config.options)
        if fresh.dirty == []:
            if fresh.verified:
                state.retime_uptodate(plan.key, mode, fresh.verified)
            state.record_noop(execution, started, list(config.argv), plan.count_with_commands())
            outcomes = _all_up_to_date(plan, reporter) if reporter.wants_every_job else []
            reporter.build_finished(outcomes, clock.time() - started)
            return outcomes
        from rlmake.recorder import Recorder
        from rlmake.scheduler import Scheduler

        cache = config.cache.open(self.state_dir, self.directory, reporter.warning) \
            if config.cache else None
        runner = self._executor(config, cache, executor)
        recorder = Recorder(state, execution, clock)
        recorder.start(list(config.argv))     # after anything that can refuse
        scan = self._scan(plan, state, mode, config.options, fresh)
        scheduler = Scheduler(plan, scan, reporter, config.options, clock, executor=runner,
                              recorder=recorder, dirty=fresh.dirty, cache=cache)
        status = ExecutionStatus.INTERRUPTED
        try:
            outcomes = scheduler.run()
            failed = any(o.status is Status.FAILED for o in outcomes)
            status = ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED
        except KeyboardInterrupt:
            outcomes = scheduler.outcomes_in_order()
            reporter.build_finished(outcomes, clock.time() - started)
            raise Interrupted("interrupted; unfinished jobs were not recorded") from None
        finally:
            runner.close()
            if cache is not None:
                cache.close()
            state.save_stat_memo(scan.hasher.updated)
            recorder.finish(list(scheduler.outcomes.values()), scheduler.unreported, status,
                            _cache_use(cache))
        if status is ExecutionStatus.SUCCEEDED:
            self._save_snapshot(plan, state, mode, scan, fresh)
        reporter.build_finished(outcomes, clock.time() - started)
        for error in scheduler.unreadable:
            if error.path in plan.sources:      # a declared source: a Rulesfile-level problem
                raise error
        failed_targets = [o.job.target for o in outcomes if o.status is Status.FAILED]
        if failed_targets:
            raise BuildFailed(f"{len(failed_targets)} job(s) failed: "
                              f"{', '.join(failed_targets[:5])}"
                              + (" ..." if len(failed_targets) > 5 else ""))
        return outcomes

    def _executor(self, config: BuildConfig, cache: "ArtifactCache | None",
                  given: Executor | None) -> Executor:
        settings = config.cache
        inner = given or make_executor(config.executor, self.directory, config.options.jobs,
                                       settings.url if settings else None,
                                       settings.endpoint_url if settings else None,
                                       bool(settings and settings.write))
        if cache is None:
            return inner
        from rlmake.executors.caching import CachingExecutor
        from rlmake.scheduler import lookup_slots

        return CachingExecutor(inner, cache, lookup_slots(config.options, cache),
                               config.options.jobs)

    def _freshness(self, plan: Plan, state: StateDB, mode: str,
                   options: BuildOptions) -> Freshness:
        stored = None if options.force or not plan.key else state.uptodate(plan.key, mode)
        return freshness(plan, stored, self.directory)

    def _scan(self, plan: Plan, state: StateDB, mode: str, options: BuildOptions,
              fresh: Freshness) -> DependencyScan:
        """With an up-to-date snapshot only the jobs that touch a changed file are decided,
        so records and memo are read on demand; without one, every job is, and they are
        read at once."""
        from rlmake.scan import DependencyScan, JobRecords

        if fresh.dirty is None:
            hasher = FileHasher(self.directory, state.stat_memo(), mode)
            records: JobRecords = state.job_records()
        else:
            hasher = FileHasher(self.directory, MemoOnDemand(state), mode)
            records = RecordsOnDemand(state)
        return DependencyScan(plan, hasher, records, state.failed_last, options.force)

    def _save_snapshot(self, plan: Plan, state: StateDB, mode: str, scan: DependencyScan,
                       fresh: Freshness) -> None:
        """Every job is up to date now: remember the stat of every file the plan touches."""
        if not plan.key or plan.index.always:
            return
        previous = fresh.snapshot
        readers = dict(previous.depfile_readers) if previous else {}
        for target, deps in scan.depfile_deps.items():
            for dep in deps:
                if target not in readers.get(dep, ()):
                    readers[dep] = (*readers.get(dep, ()), target)
        hasher = scan.hasher
        taken: tuple[Snapshot, Iterable[int]] | None
        if previous is not None and readers.keys() <= previous.depfile_readers.keys():
            # the same plan, so the same files: rewrite only the pieces that changed
            taken = renew(previous, hasher.updated, hasher.memo.get, fresh.changed, readers)
        else:
            paths = list(dict.fromkeys((*plan.sources, *plan.index.outputs, *readers)))
            taken = capture(paths, hasher.updated, hasher.memo.get, previous, fresh.changed,
                            readers, time.time_ns())
        if taken is not None:
            snapshot, pieces = taken
            state.save_uptodate(plan.key, mode, snapshot.encode_readers(),
                                snapshot.encode_pieces(pieces), len(snapshot.pieces))

    def _survey(self, plan: Plan, options: BuildOptions, reporter: Reporter, mode: str,
                clock: Clock) -> list[Outcome]:
        """What a build would do, decided without running anything or writing state."""
        from rlmake.scheduler import Scheduler

        with self.records() as state:
            fresh = self._freshness(plan, state, mode, options)
            if fresh.dirty == []:
                return []                   # everything is up to date
            scan = self._scan(plan, state, mode, options, fresh)
            return Scheduler(plan, scan, reporter, options, clock, dirty=fresh.dirty).run()

    def survey(self, targets: Iterable[str] = (), hash_mode: str | None = None
               ) -> tuple[Plan, dict[str, Outcome]]:
        """The plan for `targets` and what the next build would do with each job, and why
        (a job missing from the answer is up to date)."""
        plan = self.plan(targets)
        mode = self.build_config(hash_mode=hash_mode).hash_mode_for(plan.hash_setting)
        outcomes = self._survey(plan, BuildOptions(dry_run=True), SilentReporter(), mode,
                                SystemClock())
        return plan, {outcome.job.target: outcome for outcome in outcomes}

    @contextlib.contextmanager
    def records(self):
        """The state database for reading (an empty one if no build has run yet)."""
        state = StateDB(self.state_dir, readonly=True)
        try:
            yield state
        finally:
            state.conn.close()

    # --- explaining and tracing ---------------------------------------------------------

    def why(self, targets: Iterable[str] = ()) -> list[tuple["Cause", "Cause | None"]]:
        """For each target, why the next build will (or won't) rebuild it, and why the
        last build that ran it did. Without targets: every stale job of the default
        targets, with no history."""
        from rlmake.explain import MAX_DEPTH, Explainer

        targets = list(targets)
        plan, outcomes = self.survey(targets)
        with self.records() as state:
            explainer = Explainer(plan, outcomes, state, self.directory, self.overrides)
            if not targets:
                stale = [target for target, outcome in outcomes.items()
                         if outcome.status is not Status.CACHED and outcome.job.commands]
                return [(explainer.next_build(target, depth=MAX_DEPTH), None) for target in stale]
            jobs = dict.fromkeys(plan.producers.get(target, target) for target in plan.requested)
            return [(explainer.next_build(job), explainer.last_build(job)) for job in jobs]

    def provenance(self, path: str) -> "Origin":
        from rlmake.history import provenance

        path = normalise(path, self.directory)
        with self.records() as state:
            digest = FileHasher(self.directory, MemoOnDemand(state)).digest(path)
            return provenance(path, digest, state)

    def clean(self, targets: Iterable[str] = (), dry_run: bool = False,
              on_wait=lambda message: None) -> list[tuple[str, str]]:
        """Remove outputs that rlmake wrote, that a rule still makes and that still hold what
        rlmake wrote, and the temporaries an interrupted restore left beside them.

        Returns (path, what was done or why it was kept) for each output still there."""
        targets = list(targets)
        lock = ProjectLock(self.state_dir)
        if not dry_run:
            lock.acquire(wait=True, on_wait=on_wait)
        try:
            with self.records() as state:           # read under the lock: a build just ended
                written = state.written_digests()
                writers = state.writers()
            if targets:
                candidates = [path for job in self.plan(targets).jobs for path in job.outputs]
            else:
                candidates = sorted(written)
            hasher = FileHasher(self.directory, {}, "content")
            results = [(path, self._clean_one(path, written, writers.get(path, ()), hasher,
                                              dry_run))
                       for path in dict.fromkeys(candidates) if path in written]
            beside = candidates if targets else [*written, *self.expander.explicit]
            results += self._clean_restore_leftovers(beside, dry_run)
            return [(path, action) for path, action in results if action is not None]
        finally:
            lock.release()

    def _clean_one(self, path: str, written: dict[str, set[str]], writers: Iterable[str],
                   hasher: FileHasher, dry_run: bool) -> str | None:
        """What became of one recorded output; None when it is already gone."""
        if os.path.isabs(path) or path.startswith(".."):
            return "kept (outside the project)"
        digest = hasher.digest(path)
        if digest is None:
            return None
        if not self._made_by_a_rule(path, writers):
            return "kept (no rule makes it now)"
        if digest not in written[path]:
            return "kept (changed since rlmake wrote it)"
        if dry_run:
            return "would remove"
        os.remove(os.path.join(self.directory, path))
        return "removed"

    def _made_by_a_rule(self, path: str, writers: Iterable[str]) -> bool:
        """Whether a rule makes `path` now: found by name, or among the outputs of a job
        that wrote it (a pattern rule's templated outputs cannot be found by name)."""
        expander = self.expander
        if expander.instance_for(path) is not None:
            return True
        for target in writers:
            instance = expander.instance_for(target)
            try:
                if instance is not None and path in expander.make_job(instance).outputs:
                    return True
            except RlmakeError:
                continue                    # a rule that no longer renders makes nothing
        return False

    def _clean_restore_leftovers(self, outputs: Iterable[str], dry_run: bool
                                 ) -> list[tuple[str, str]]:
        """The temporaries a restore killed halfway left beside the outputs (only names that
        are exactly rlmake's own)."""
        from rlmake.cache.artifacts import RESTORE_PREFIX
        from rlmake.cache.base import is_temporary

        directories = {os.path.dirname(path) for path in outputs
                       if not os.path.isabs(path) and not path.startswith("..")}
        results = []
        for directory in sorted(directories):
            try:
                names = sorted(os.listdir(os.path.join(self.directory, directory)))
            except OSError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                full = os.path.join(self.directory, path)
                if not is_temporary(name, RESTORE_PREFIX) or not os.path.isfile(full) \
                        or os.path.islink(full):
                    continue
                if dry_run:
                    results.append((path, "would remove (left by an interrupted restore)"))
                    continue
                os.remove(full)
                results.append((path, "removed (left by an interrupted restore)"))
        return results

    def collect_garbage(self, max_bytes: int, on_wait=lambda message: None
                        ) -> tuple[int, int, int]:
        """Shrink the project's own store to `max_bytes`, least recently used first, and
        remove the temporaries killed writes left in it: (entries removed, bytes freed,
        temporaries removed). Under the lock, so no build is writing to the store."""
        from rlmake.cache.local import LocalStore

        lock = ProjectLock(self.state_dir)
        lock.acquire(wait=True, on_wait=on_wait)
        try:
            store = LocalStore(os.path.join(self.state_dir, "cache"))
            temporaries, temporary_bytes = store.remove_temporaries()
            removed, freed = store.collect_garbage(max_bytes)
            return removed, freed + temporary_bytes, temporaries
        finally:
            lock.release()


def _all_up_to_date(plan: Plan, reporter: Reporter) -> list[Outcome]:
    """A no-op build's outcomes, for reporters that list every job."""
    reporter.build_started(sum(1 for job in plan.jobs if job.commands))
    outcomes = []
    for job in plan.jobs:
        outcome = Outcome(job, Status.CACHED if job.commands else Status.DONE)
        outcomes.append(outcome)
        if job.commands:
            reporter.job_finished(outcome)
    return outcomes


def _cache_use(cache: "ArtifactCache | None") -> CacheUse | None:
    if cache is None:
        return None
    stats = cache.stats
    return CacheUse(stats.hits, stats.misses, stats.bytes_restored, stats.bytes_stored)
