"""The public Python API: a project directory, its Rulesfile, and what can be done with it.

Imports of the heavier layers (YAML, Jinja2, expansion, explanations) happen
inside the methods that need them: a no-op build with a stored plan never
loads them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable

from rlmake import plancache
from rlmake.config import Config, load_config
from rlmake.errors import BuildFailed, Interrupted, UsageError
from rlmake.executors import ExecutorSettings, make_executor
from rlmake.executors.leftovers import stop_leftovers
from rlmake.hashing import HASH_MODES, FileHasher, digest_file
from rlmake.lock import ProjectLock
from rlmake.model import BuildOptions, Outcome, Plan, Rulesfile, Status
from rlmake.paths import normalise
from rlmake.reporters.base import Reporter, SilentReporter
from rlmake.locate import find_rulesfile
from rlmake.state import CacheUse, MemoOnDemand, RecordsOnDemand, StateDB
from rlmake.uptodate import Snapshot, capture, changed_files, renew

if TYPE_CHECKING:
    from rlmake.cache.artifacts import ArtifactCache
    from rlmake.scheduler import Scheduler
    from rlmake.cache.settings import CacheSettings
    from rlmake.expand import Expander
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
        from rlmake import rulesfile

        return rulesfile.load(self.path)

    @cached_property
    def expander(self) -> "Expander":
        from rlmake.expand import Expander

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

    def executor_settings(self, kind: str | None = None, scheduler: str | None = None,
                          file_mode: str | None = None) -> ExecutorSettings:
        """Flags, else rlmake.toml's [build] section, else run here."""
        get = self.config.get
        return ExecutorSettings(kind or get("build", "executor") or "local",
                                scheduler or get("build", "scheduler"),
                                file_mode or get("build", "file_mode") or "auto")

    def cache_settings(self, url: str | None = None, write: bool | None = None,
                       local: bool | None = None) -> "CacheSettings":
        from rlmake.cache.settings import CacheSettings

        return CacheSettings.resolve(self.config, url, write, local)

    def hash_mode(self, plan: Plan, requested: str | None = None) -> str:
        """--hash, else RLMAKE_HASH, else rlmake.toml's [build] hash, else the Rulesfile
        var `rlmake_hash`, else content."""
        mode = (requested or os.environ.get("RLMAKE_HASH") or self.config.get("build", "hash")
                or plan.hash_setting or "content")
        if mode not in HASH_MODES:
            raise UsageError(f"unknown hash mode '{mode}': use one of {', '.join(HASH_MODES)}")
        return mode

    # --- building -------------------------------------------------------------------------

    def build(self, targets: Iterable[str], options: BuildOptions, reporter: Reporter, *,
              argv: list[str] | None = None, wait: bool = True,
              hash_mode: str | None = None,
              cache: "CacheSettings | None" = None,
              executor: ExecutorSettings | None = None) -> list[Outcome]:
        """Bring the targets up to date; raises BuildFailed if a command failed.

        `cache`: which artifact stores to use (none when not given); `executor`: where
        commands run (this machine when not given)."""
        plan = self.plan(targets)               # every Rulesfile error comes before any command
        mode = self.hash_mode(plan, hash_mode)
        if options.dry_run:
            outcomes = self._survey(plan, options, reporter, mode)
            reporter.build_finished(outcomes, 0.0)
            return outcomes
        lock = ProjectLock(self.state_dir)
        lock.acquire(wait, reporter.warning)
        try:
            stop_leftovers(self.state_dir, reporter.warning)
            state = StateDB(self.state_dir)
            try:
                return self._run(plan, options, reporter, mode, state, argv or [], cache,
                                 executor or ExecutorSettings())
            finally:
                state.close()
        finally:
            lock.release()

    def _run(self, plan: Plan, options: BuildOptions, reporter: Reporter, mode: str,
             state: StateDB, argv: list[str], cache_settings: "CacheSettings | None",
             executor_settings: ExecutorSettings) -> list[Outcome]:
        execution = os.urandom(4).hex()
        started = time.time()
        snapshot, changed, verified, hasher, records = self._what_to_decide(plan, state, mode,
                                                                             options)
        if snapshot is not None and not changed:
            if verified:
                state.retime_uptodate(plan.key, mode, verified)
            state.record_noop(execution, started, argv, plan.count_with_commands())
            outcomes = _all_up_to_date(plan, reporter) if reporter.wants_every_job else []
            reporter.build_finished(outcomes, time.time() - started)
            return outcomes
        from rlmake.scheduler import Scheduler

        cache = cache_settings.open(self.state_dir, self.directory, reporter.warning) \
            if cache_settings else None
        executor = self._executor(options, cache, cache_settings, executor_settings)
        state.start_execution(execution, started, argv)    # after anything that can refuse
        scheduler = Scheduler(plan, self.directory, executor, reporter, hasher, state, records,
                              execution, options, changed,
                              snapshot.depfile_readers if snapshot else None, cache)
        status = "interrupted"
        try:
            outcomes = scheduler.run()
            status = "failed" if any(o.status is Status.FAILED for o in outcomes) else "succeeded"
        except KeyboardInterrupt:
            reporter.build_finished(list(scheduler.outcomes.values()), time.time() - started)
            raise Interrupted("interrupted; unfinished jobs were not recorded") from None
        finally:
            executor.close()
            if cache is not None:
                cache.close()
            state.save_stat_memo(hasher.updated)
            counts = Counter(o.status for o in scheduler.outcomes.values() if o.job.commands)
            state.finish_execution(execution, time.time(), status, counts[Status.DONE],
                                   counts[Status.CACHED] + scheduler.unreported,
                                   counts[Status.FAILED], _cache_use(cache))
        if status == "succeeded":
            self._save_snapshot(plan, state, mode, scheduler, snapshot, changed)
        reporter.build_finished(outcomes, time.time() - started)
        failed = [o.job.target for o in outcomes if o.status is Status.FAILED]
        if failed:
            raise BuildFailed(f"{len(failed)} job(s) failed: {', '.join(failed[:5])}"
                              + (" ..." if len(failed) > 5 else ""))
        return outcomes

    def _executor(self, options: BuildOptions, cache: "ArtifactCache | None",
                  cache_settings: "CacheSettings | None", settings: ExecutorSettings):
        url = cache_settings.url if cache_settings else None
        endpoint = cache_settings.endpoint_url if cache_settings else None
        executor = make_executor(settings, self.directory, options.jobs, url, endpoint)
        if cache is None:
            return executor
        from rlmake.executors.caching import CachingExecutor
        from rlmake.scheduler import lookup_slots

        return CachingExecutor(executor, cache, lookup_slots(options, cache), options.jobs)

    def _what_to_decide(self, plan: Plan, state: StateDB, mode: str, options: BuildOptions):
        """(snapshot, changed files, verified pieces, hasher, records): with an up-to-date
        snapshot only the jobs that touch a changed file are decided, so records and memo
        are read on demand; without one, every job is, and they are read at once.
        Verified pieces: when nothing changed, those whose fresh entries proved unchanged
        by content, with their new time (uptodate.changed_files)."""
        stored = None if options.force or not plan.key else state.uptodate(plan.key, mode)
        snapshot = Snapshot.decode(*stored) if stored else None
        if snapshot is None:
            return (None, None, {}, FileHasher(self.directory, state.stat_memo(), mode),
                    state.job_records())
        changed, verified = changed_files(snapshot, self.directory)
        return (snapshot, changed, verified, FileHasher(self.directory, MemoOnDemand(state), mode),
                RecordsOnDemand(state))

    def _save_snapshot(self, plan: Plan, state: StateDB, mode: str, scheduler: "Scheduler",
                       previous: Snapshot | None, changed: set[str] | None) -> None:
        """Every job is up to date now: remember the stat of every file the plan touches."""
        if not plan.key or plan.index.always:
            return
        readers = dict(previous.depfile_readers) if previous else {}
        for target, deps in scheduler.depfile_deps.items():
            for dep in deps:
                if target not in readers.get(dep, ()):
                    readers[dep] = (*readers.get(dep, ()), target)
        hasher = scheduler.hasher
        if previous is not None and readers.keys() <= previous.depfile_readers.keys():
            # the same plan, so the same files: rewrite only the pieces that changed
            taken = renew(previous, hasher.updated, hasher.memo.get, changed or set(), readers)
        else:
            paths = list(dict.fromkeys((*plan.sources, *plan.index.outputs, *readers)))
            taken = capture(paths, hasher.updated, hasher.memo.get, previous, changed or set(),
                            readers, time.time_ns())
        if taken is not None:
            snapshot, pieces = taken
            state.save_uptodate(plan.key, mode, snapshot.encode_readers(),
                                snapshot.encode_pieces(pieces), len(snapshot.pieces))

    def _survey(self, plan: Plan, options: BuildOptions, reporter: Reporter,
                mode: str) -> list[Outcome]:
        """What a build would do, decided without running anything or writing state."""
        with self.records() as state:
            snapshot, changed, _, hasher, records = self._what_to_decide(plan, state, mode,
                                                                         options)
            if snapshot is not None and not changed:
                return []                   # everything is up to date
            from rlmake.scheduler import Scheduler

            scheduler = Scheduler(plan, self.directory, None, reporter, hasher, state, records,
                                  "", options, changed,
                                  snapshot.depfile_readers if snapshot else None)
            return scheduler.run()

    def survey(self, targets: Iterable[str] = (), hash_mode: str | None = None
               ) -> tuple[Plan, dict[str, Outcome]]:
        """The plan for `targets` and what the next build would do with each job, and why
        (a job missing from the answer is up to date)."""
        plan = self.plan(targets)
        outcomes = self._survey(plan, BuildOptions(dry_run=True), SilentReporter(),
                                self.hash_mode(plan, hash_mode))
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
            return [(explainer.next_build(target), explainer.last_build(target))
                    for target in plan.requested]

    def provenance(self, path: str) -> "Origin":
        from rlmake.history import provenance

        path = normalise(path, self.directory)
        with self.records() as state:
            digest = FileHasher(self.directory, state.stat_memo()).digest(path)
            return provenance(path, digest, state)

    def clean(self, targets: Iterable[str] = (), dry_run: bool = False) -> list[tuple[str, str]]:
        """Remove outputs that rlmake wrote and that still hold what it wrote.

        Returns (path, what was done or why it was kept) for each output still there."""
        targets = list(targets)
        with self.records() as state:
            written = state.written_digests()
        if targets:
            candidates = [path for job in self.plan(targets).jobs for path in job.outputs]
        else:
            candidates = sorted(written)
        lock = ProjectLock(self.state_dir)
        if not dry_run:
            lock.acquire(wait=True, on_wait=lambda message: None)
        try:
            hasher = FileHasher(self.directory, {}, "content")
            results = [(path, self._clean_one(path, written, hasher, dry_run))
                       for path in dict.fromkeys(candidates) if path in written]
            return [(path, action) for path, action in results if action is not None]
        finally:
            lock.release()

    def _clean_one(self, path: str, written: dict[str, set[str]], hasher: FileHasher,
                   dry_run: bool) -> str | None:
        """What became of one recorded output; None when it is already gone."""
        if os.path.isabs(path) or path.startswith(".."):
            return "kept (outside the project)"
        digest = hasher.digest(path)
        if digest is None:
            return None
        if self.expander.instance_for(path) is None:
            return "kept (no rule makes it now)"
        if digest not in written[path]:
            return "kept (changed since rlmake wrote it)"
        if dry_run:
            return "would remove"
        os.remove(os.path.join(self.directory, path))
        return "removed"


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
