"""The public Python API: a project directory, its Rulesfile, and what can be done with it.

Imports of the heavier layers (YAML, Jinja2, expansion, explanations) happen
inside the methods that need them: a no-op build with a stored plan never
loads them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Collection, Iterable

from rlmake import buildconfig, plancache
from rlmake.buildconfig import BuildConfig
from rlmake.clock import Clock, SystemClock
from rlmake.config import Config, load_config
from rlmake.errors import BuildFailed, ExecutorLost, Interrupted, RlmakeError, UsageError
from rlmake.hashing import FileHasher, digest_file
from rlmake.locate import find_rulesfile
from rlmake.executors.leftovers import logged, remove_log, stop_leftovers
from rlmake.lock import ProjectLock, build_running
from rlmake.model import (BuildOptions, ExecutionStatus, Outcome, Plan, ReasonKind,
                          Rulesfile, Status)
from rlmake.paths import normalise
from rlmake.reporters.base import Phase, Reporter, SilentReporter
from rlmake.state import CacheUse, MemoOnDemand, RecordsOnDemand, StateDB
from rlmake.uptodate import Freshness, Snapshot, capture, freshness, renew

if TYPE_CHECKING:
    from rlmake.executors.base import Executor
    from rlmake.cache.artifacts import ArtifactCache
    from rlmake.cache.housekeeping import Collected, Limits, Tended
    from rlmake.cache.projectstore import ProjectStore
    from rlmake.cache.settings import CacheSettings
    from rlmake.rules.expand import Expander
    from rlmake.scan import DependencyScan
    from rlmake.explain import Cause
    from rlmake.history import Origin
    from rlmake.model import DirIdentity


class Project:
    """A Rulesfile found from `directory` (make's -C) or named by `file` (-f)."""

    def __init__(self, directory: str = ".", file: str | None = None,
                 overrides: dict[str, Any] | None = None, use_plan_cache: bool = True):
        self.path = find_rulesfile(os.path.abspath(directory), file)
        self.directory = os.path.dirname(self.path)
        self.state_dir = os.path.join(self.directory, ".rlmake")
        self.overrides = dict(overrides or {})
        self.use_plan_cache = use_plan_cache
        # the regular files the last plan's expansion looked at (none for a stored plan)
        self._files_seen: Collection[str] = ()

    # --- from Rulesfile to plan -----------------------------------------------------------

    @cached_property
    def rulesfile(self) -> Rulesfile:
        from rlmake.rules import rulesfile

        return rulesfile.load(self.path)

    @cached_property
    def expander(self) -> "Expander":
        from rlmake.rules.expand import Expander

        return Expander(self.rulesfile, self.overrides)

    def globbed(self) -> set[str]:
        """The project paths the glob() calls of this project's expansion matched (none
        when its plan was a stored one)."""
        if "expander" not in self.__dict__:         # never expanded: nothing globbed
            return set()
        return {path for found in self.expander.templates.globs_read.values() for path in found}

    def plan_outdated(self, targets: Iterable[str] = ()) -> bool:
        """Whether the plan `targets` had would now expand differently: its stored plan is
        gone, or something its expansion read (a Rulesfile, a glob() result, whether a
        path exists) reads differently. Without the plan cache, never."""
        if not self.use_plan_cache:
            return False
        name = plancache.entry_name(self.path, list(targets), self.overrides)
        return plancache.load(self.state_dir, name, self.directory) is None

    def plan(self, targets: Iterable[str] = (), store: bool = True) -> Plan:
        """The jobs `targets` need (none: the default targets); a stored plan when valid.
        `store`: keep a new plan for the next build (a dry run writes nothing)."""
        targets = list(targets)
        self._files_seen = ()
        name = plancache.entry_name(self.path, targets, self.overrides)
        if self.use_plan_cache:
            stored = plancache.load(self.state_dir, name, self.directory)
            if stored is not None:
                return stored
        with _collector_paused():
            expander = self.expander
            requested = (expander.check_requested(targets) if targets
                         else expander.default_targets())
            plan = expander.plan(requested)
        self._files_seen = expander.regular_files
        if not self.use_plan_cache:
            return plan
        if not store:
            # keyed only to find its up-to-date snapshot, which no state database means
            # there is none of (a database made meanwhile just goes unused: the dry run
            # then decides every job, as without a snapshot)
            if not os.path.exists(os.path.join(self.state_dir, "state.db")):
                return plan
            return plancache.identify(plan)
        inputs = plancache.Inputs(
            files=tuple((path, digest_file(path)) for path in self.rulesfile.files),
            globs=tuple(expander.templates.globs_read.items()),
            probes=tuple(expander.probes.items()))
        return plancache.save(self.state_dir, name, plan, inputs)

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
        """Bring the targets up to date; raises BuildFailed if a command failed, and
        ExecutorLost if the executor could run nothing any more.

        `executor`: where commands run (default: as `config` says); `clock`: the time
        the engine sees. Tests pass both to run builds in-process."""
        reporter.phase_started(Phase.PLAN)
        plan = self.plan(targets, store=not config.options.dry_run)   # Rulesfile errors first
        mode = config.hash_mode_for(plan.hash_setting)
        clock = clock or SystemClock()
        if config.options.dry_run:
            outcomes = self._survey(plan, config.options, reporter, mode, clock)
            reporter.build_finished(outcomes, 0.0)
            return outcomes
        lock = ProjectLock(self.state_dir)
        lock.acquire(config.wait, reporter.warning)
        try:
            state = self._take_over_log(reporter)
            try:
                if "expander" in self.__dict__:     # planned anew: the Rulesfile changed
                    _warn_of_former_outputs(plan, state, reporter.warning)
                return self._run(plan, config, reporter, mode, state, executor, clock)
            finally:
                state.close()
        finally:
            lock.release()

    def _run(self, plan: Plan, config: BuildConfig, reporter: Reporter, mode: str,
             state: StateDB, executor: Executor | None, clock: Clock) -> list[Outcome]:
        started = clock.time()
        execution = os.urandom(4).hex()
        reporter.phase_started(Phase.DECIDE)
        fresh = self._freshness(plan, state, mode, config.options)
        if fresh.dirty == []:
            if fresh.verified:
                state.retime_uptodate(plan.key, mode, fresh.verified)
            reporter.phase_started(Phase.RECORD)
            state.record_noop(execution, started, list(config.argv), plan.count_with_commands())
            outcomes = _all_up_to_date(plan, reporter) if reporter.wants_every_job else []
            reporter.build_finished(outcomes, clock.time() - started)
            return outcomes
        from rlmake.recorder import Recorder
        from rlmake.scheduler import Scheduler

        cache = config.cache.open(self.state_dir, self.directory, reporter.warning,
                                  execution) if config.cache else None
        runner, options = self._executor(config, cache, executor)
        recorder = Recorder(state, execution, clock)
        recorder.start(list(config.argv))     # after anything that can refuse
        scan = self._scan(plan, state, mode, options, fresh)
        scheduler = Scheduler(plan, scan, reporter, options, clock, executor=runner,
                              recorder=recorder, dirty=fresh.dirty, cache=cache)
        status = ExecutionStatus.INTERRUPTED
        reporter.phase_started(Phase.RUN)
        try:
            outcomes = scheduler.run()
            failed = any(o.status is Status.FAILED for o in outcomes)
            status = ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED
            reporter.phase_started(Phase.RECORD)
        except KeyboardInterrupt:
            outcomes = scheduler.outcomes_in_order()
            reporter.build_finished(outcomes, clock.time() - started)
            raise Interrupted("interrupted; unfinished jobs were not recorded") from None
        except ExecutorLost:
            status = ExecutionStatus.EXECUTOR_FAILED
            reporter.build_finished(scheduler.outcomes_in_order(), clock.time() - started)
            raise
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
                  given: Executor | None) -> tuple[Executor, BuildOptions]:
        """Where the commands run, and the build's options with -j settled: when not
        given, as many jobs as that executor runs at once (a Dask cluster's threads)."""
        from rlmake.executors import make_executor

        settings = config.cache
        if given is not None:
            inner, capacity = given, os.cpu_count() or 1
        else:
            inner, capacity = make_executor(config.executor, self.directory, config.options.jobs,
                                            settings.url if settings else None,
                                            settings.endpoint_url if settings else None,
                                            bool(settings and settings.write))
        options = config.options if config.options.jobs else \
            config.options._replace(jobs=capacity)
        if cache is None:
            return inner, options
        from rlmake.executors.caching import CachingExecutor
        from rlmake.scheduler import lookup_slots

        return CachingExecutor(inner, cache, lookup_slots(options, cache),
                               options.jobs or capacity), options

    def _freshness(self, plan: Plan, state: StateDB, mode: str,
                   options: BuildOptions) -> Freshness:
        stored = None if options.force or not plan.key else state.uptodate(plan.key, mode)
        return freshness(plan, stored, self.directory, plan.take_seen())

    def _scan(self, plan: Plan, state: StateDB, mode: str, options: BuildOptions,
              fresh: Freshness, forgotten: Collection[str] = ()) -> DependencyScan:
        """With an up-to-date snapshot only the jobs that touch a changed file are decided,
        so records and memo are read on demand; without one, every job is, and they are
        read at once. `forgotten`: jobs whose records are taken as gone (for a dry run,
        those the next build will forget; then there must be no snapshot)."""
        from rlmake.scan import DependencyScan, JobRecords

        if fresh.dirty is None:
            hasher = FileHasher(self.directory, state.stat_memo(), mode)
            read = state.job_records()
            for target in forgotten:
                read.pop(target, None)
            records: JobRecords = read
        else:
            hasher = FileHasher(self.directory, MemoOnDemand(state), mode)
            records = RecordsOnDemand(state)
        # a dry run takes what expansion just saw of the sources; a build reads them anyway
        return DependencyScan(plan, hasher, records, lambda: _unfinished(state, forgotten),
                              options.force, options.dry_run,
                              self._files_seen if options.dry_run else ())

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

    def _take_over_log(self, reporter: Reporter) -> StateDB:
        """The state database, once the log an earlier build left (killed, or interrupted)
        is taken over: its unfinished jobs listed (committed), its commands stopped, the
        log removed. Listed first, as stopping may take seconds: `why` and `build -n`
        leave the log of a build that holds the lock alone, and find them listed
        meanwhile. The commands are stopped even if the database cannot be used."""
        log = logged(self.state_dir)
        with contextlib.ExitStack() as on_error:
            try:
                state = StateDB(self.state_dir)
                on_error.callback(state.close)
                if log.unfinished:
                    state.mark_unfinished(log.unfinished)
            finally:
                stop_leftovers(log, reporter.warning)
            remove_log(self.state_dir)
            on_error.pop_all()          # opened and taken over: the caller closes it
            return state

    def _survey(self, plan: Plan, options: BuildOptions, reporter: Reporter, mode: str,
                clock: Clock) -> list[Outcome]:
        """What a build would do, decided without running anything or writing state."""
        from rlmake.scheduler import Scheduler

        # the jobs whose commands a killed or interrupted build stopped: the next build
        # forgets their records and runs them, so a dry run says they will run. While a
        # build runs, the log is its own: what it lists is running, not stopped.
        unfinished = logged(self.state_dir).unfinished
        if unfinished and build_running(self.state_dir):
            unfinished = set()
        with self.records() as state:
            fresh = Freshness(None) if unfinished else \
                self._freshness(plan, state, mode, options)
            if fresh.dirty == []:
                return []                   # everything is up to date
            scan = self._scan(plan, state, mode, options, fresh, unfinished)
            with _collector_paused():
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

    def provenance(self, path: str, depth: int | None = None) -> "Origin":
        """Where `path`'s content came from, `depth` levels of inputs down (None: all)."""
        from rlmake.history import provenance

        path = normalise(path, self.directory)
        with self.records() as state:
            digest = FileHasher(self.directory, MemoOnDemand(state)).digest(path)
            return provenance(path, digest, state, depth)

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
                made_dirs = state.dirs_made()
            if targets:
                candidates = [path for job in self.plan(targets).jobs
                              for path in (*job.outputs, *([job.depfile] if job.depfile else []))]
            else:
                candidates = sorted(written)
            hasher = FileHasher(self.directory, {}, "content")
            results = [(path, self._clean_one(path, written, writers.get(path, ()), hasher,
                                              dry_run))
                       for path in dict.fromkeys(candidates) if path in written]
            beside = candidates if targets else [*written, *self.expander.explicit]
            results += self._clean_restore_leftovers(beside, dry_run)
            results += self._clean_made_dirs(made_dirs, results, candidates if targets else None,
                                             dry_run)
            return [(path, action) for path, action in results if action is not None]
        finally:
            lock.release()

    def _really_inside(self, path: str) -> bool:
        """Whether project path `path` is inside the project once symlinks are followed:
        a directory of it may have become a link to elsewhere since rlmake wrote there."""
        if os.path.isabs(path) or path.startswith(".."):
            return False
        project = os.path.realpath(self.directory)
        real = os.path.realpath(os.path.join(self.directory, path))
        return real == project or real.startswith(project + os.sep)

    def _clean_one(self, path: str, written: dict[str, set[str]], writers: Iterable[str],
                   hasher: FileHasher, dry_run: bool) -> str | None:
        """What became of one recorded output; None when it is already gone."""
        if not os.path.lexists(os.path.join(self.directory, path)):
            return None
        if not self._really_inside(os.path.dirname(path) or "."):
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
                job = expander.make_job(instance) if instance is not None else None
                if job is not None and (path in job.outputs or path == job.depfile):
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

    def _clean_made_dirs(self, made: dict[str, DirIdentity],
                         results: list[tuple[str, str | None]],
                         targets_paths: list[str] | None, dry_run: bool
                         ) -> list[tuple[str, str]]:
        """The directories rlmake made for outputs that are empty once the outputs are
        gone, deepest first (for a clean of some targets: only those above its outputs).
        Only one that is still the directory rlmake made (its inode and the inode's
        generation), inside the project through no symlink."""
        from rlmake import jobfiles

        gone = {path for path, action in results if action in ("removed", "would remove")}
        paths = list(made)
        if targets_paths is not None:
            above = {os.path.dirname(path) for path in targets_paths}
            above |= {parent for path in above for parent in _parents(path)}
            paths = [path for path in paths if path in above]
        removed = []
        for directory in sorted(paths, key=lambda path: path.count("/"), reverse=True):
            full = os.path.join(self.directory, directory)
            if directory in ("", ".") or not self._really_inside(directory) \
                    or jobfiles.directory_identity(full) != made[directory]:
                continue
            try:
                left = {os.path.join(directory, name) for name in os.listdir(full)}
            except OSError:
                continue
            if not left <= gone:
                continue
            if not dry_run:
                try:
                    os.rmdir(full)
                except OSError:
                    continue                # something was made in it meanwhile: keep it
            gone.add(directory)
            removed.append(directory)
        if removed and not dry_run:
            state = StateDB(self.state_dir)
            try:
                state.forget_dirs(removed)
            finally:
                state.close()
        action = "would remove (empty directory)" if dry_run else "removed (empty directory)"
        return [(f"{directory}/", action) for directory in removed]

    def local_store(self) -> "ProjectStore":
        """The project's own artifact store, in .rlmake/cache."""
        from rlmake.cache.projectstore import ProjectStore

        return ProjectStore(os.path.join(self.state_dir, "cache"))

    def shared_store(self, settings: "CacheSettings") -> "Tended | None":
        """The shared store `settings` name, for housekeeping; None if none is named. A
        directory that does not exist is refused: it is a typo far more often than a
        store no build has written to yet."""
        from rlmake.cache.local import LocalStore

        store = settings.shared_store(self.directory)
        if isinstance(store, LocalStore) and not os.path.isdir(store.root):
            raise UsageError(f"no shared store at '{store.name}': {store.root} is not a "
                             "directory")
        return store

    def collect_garbage(self, limits: "Limits", on_wait=lambda message: None,
                        dry_run: bool = False, now: float | None = None) -> "Collected":
        """Remove from the project's own store what `limits` select (see
        housekeeping.select), and the temporaries killed writes left in it. Under the
        lock, so no build is writing to the store. `now`: the time ages are taken at."""
        from rlmake.cache import housekeeping

        lock = ProjectLock(self.state_dir)
        if not dry_run:
            lock.acquire(wait=True, on_wait=on_wait)
        try:
            store = self.local_store()
            temporaries = (0, 0) if dry_run else store.remove_temporaries()
            collected = housekeeping.collect(store, limits, time.time() if now is None else now,
                                             dry_run)
            if not dry_run and collected.error is None and os.path.isdir(store.root):
                # counted: the next build that stores need not walk the store
                from rlmake.cache.cap import write_estimate

                write_estimate(store.root, collected.kept.total_size)
            return collected._replace(temporaries=temporaries)
        finally:
            lock.release()

    def collect_shared_garbage(self, settings: "CacheSettings", limits: "Limits",
                               dry_run: bool = False, now: float | None = None) -> "Collected":
        """Remove from the shared store `settings` name what `limits` select, and the
        temporaries killed writes left in a directory store over a day ago. No lock:
        builds may use the store meanwhile (see housekeeping for why that is safe)."""
        from rlmake.cache import housekeeping
        from rlmake.cache.local import LocalStore

        store = self.shared_store(settings)
        if store is None:
            raise UsageError("no shared store is named: give --cache URL or set RLMAKE_CACHE")
        if not (settings.write or dry_run):
            raise UsageError(f"cache gc removes entries from the shared store '{store.name}', "
                             "which needs write access: give --cache-write (or set "
                             "RLMAKE_CACHE_WRITE=1), --dry-run to see what it would remove, "
                             "or --local for the project's own store")
        now = time.time() if now is None else now
        collected = housekeeping.collect(store, limits, now, dry_run)
        if isinstance(store, LocalStore) and not dry_run:
            stale = now - housekeeping.STALE_TEMPORARY_SECONDS
            collected = collected._replace(temporaries=store.remove_temporaries(stale))
        return collected


def _unfinished(state: StateDB, forgotten: Collection[str]) -> dict[str, ReasonKind]:
    """How the last run ended of each job not run to success since (see
    StateDB.unfinished_ends); `forgotten`, the jobs a dead build's log says were running,
    were stopped, whatever ended their run before."""
    ends = state.unfinished_ends()
    ends.update(dict.fromkeys(forgotten, ReasonKind.LAST_RUN_STOPPED))
    return ends


def _warn_of_former_outputs(plan: Plan, state: StateDB, warn) -> None:
    """Files the plan takes as sources that a rule made before: a typo in a pattern rule's
    deps or order_only makes the rule not apply, and its old outputs then pass for
    sources, up to date for ever. Said when the plan is made, not on every build."""
    writers = state.writers()
    former = [path for path in plan.sources if path in writers]
    if former:
        shown = ", ".join(f"'{path}'" for path in former[:3])
        more = f" and {len(former) - 3} more" if len(former) > 3 else ""
        warn(f"{shown}{more}: an earlier build made {'it' if len(former) == 1 else 'them'} "
             "with a rule, but no rule makes it now, so it is taken as a source: if a rule "
             "should still make it, check that rule's deps and order_only (a pattern rule "
             "applies only when each of them exists or can be made)")


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off for a while. Expanding a large plan and surveying it
    make millions of objects that live on, and the collector went through them again and
    again: a fifth of a 100,000-job dry run. What they make has no reference cycles to
    collect (plain tuples, strings and dicts); the collector runs again afterwards.

    Turned back on, it would go through everything made meanwhile at its next young
    collection, and again at the middle one: those objects are moved straight to the
    oldest generation instead (freeze, then unfreeze: two list splices), where only a
    full collection looks, as it would have anyway. Not when the caller froze objects
    of its own: unfreezing would release them too."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def _parents(path: str) -> list[str]:
    parents = []
    while path := os.path.dirname(path):
        parents.append(path)
    return parents


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
