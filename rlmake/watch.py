"""`rlmake build --watch`: build, then build again whenever a file the plan reads changes.

Each cycle opens the project anew (a changed Rulesfile, include or rlmake.toml
re-plans), builds, and waits for a change to one of the files it watches: the
plan's sources, the Rulesfiles and rlmake.toml. Any other file created, removed
or changed (outside .rlmake/) counts only if the plan would now expand
differently: a new file a glob() matches, or a path whose existence a rule
depends on. So the outputs rlmake writes do not start a build. One watcher
stays alive across cycles, so a change saved while a build runs is collected
and starts the next build as soon as this one ends. A burst of saves is one change (watchfiles debounces).
A failed build, or a Rulesfile that does not load, keeps watching.

watchfiles is imported only here, and only when --watch is given.
"""

from __future__ import annotations

import os
from typing import Callable, Generator, Iterable

from rlmake.errors import Interrupted, RlmakeError, UsageError
from rlmake.project import Project

_DEBOUNCE_MS = 1600     # the longest a burst of changes is gathered into one
_STEP_MS = 50           # a burst ends when nothing changed for this long
_WAKE_MS = 200          # how often a quiet watcher wakes (it yields no change then)
_SHOWN_NAMES = 3        # changed files named in the "changed, building" line


def watch(open_project: Callable[[], Project], build: Callable[[Project], object],
          targets: Iterable[str], say: Callable[[str], None]) -> None:
    """Build with `build(open_project())`, then again on every change, until Ctrl-C
    (raised as Interrupted). `say` prints one line."""
    watchfiles = _import_watchfiles()
    targets = list(targets)
    first = open_project()                          # no Rulesfile at all: nothing to watch
    directory = first.directory
    project: Project | None = first
    changes = _changes(watchfiles, directory)
    try:
        next(changes)   # the watcher starts on the first call: before the first build reads
        while True:
            watched = watched_files(project, targets, say) if project else None
            before = _stats(watched or ())
            if project is not None and watched is not None:
                _build_once(project, build, say)
            changed = _changed(watched, before)     # saved while the build ran
            if not changed:
                say(f"rlmake: watching {len(watched)} files; Ctrl-C to stop" if watched
                    else "rlmake: watching every file until the Rulesfile loads; Ctrl-C to stop")
                changed = _next_change(changes, directory, watched, before,
                                       _plan_changes(project, open_project, targets))
            say(f"rlmake: {_names(changed, directory)} changed, building")
            project = _opened(open_project, say)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; stopped watching") from None
    finally:
        changes.close()


def _import_watchfiles():
    try:
        import watchfiles
    except ImportError:
        raise UsageError("--watch needs the watchfiles package: pip install 'rlmake[watch]'"
                         ) from None
    return watchfiles


def _opened(open_project: Callable[[], Project], say: Callable[[str], None]) -> Project | None:
    """A new Project (the Rulesfile is looked for again); None, said, if there is none."""
    try:
        return open_project()
    except RlmakeError as error:
        say(f"rlmake: error: {error}")
        return None


def _build_once(project: Project, build: Callable[[Project], object],
                say: Callable[[str], None]) -> None:
    """One build; its failure is said and the watch goes on. Ctrl-C ends the watch."""
    try:
        build(project)
    except Interrupted:
        raise
    except RlmakeError as error:
        say(f"rlmake: error: {error}")


def watched_files(project: Project, targets: list[str], say: Callable[[str], None]
                  ) -> set[str] | None:
    """The absolute paths of every file whose change calls for a new build: the plan's
    sources, the files its jobs' depfiles listed last time (headers), the Rulesfile and
    what it includes, and rlmake.toml (never under .rlmake/). None, said, when the
    Rulesfile cannot be planned."""
    directory = project.directory
    try:
        plan = project.plan(targets)
        files = {project.path, os.path.join(directory, "rlmake.toml"), *project.rulesfile.files,
                 *plan.sources}
        with project.records() as state:
            records = state.job_records()
        outputs = set(plan.index.outputs)
        files.update(dep for job in plan.jobs if job.target in records
                     for dep in records[job.target].depfile_deps if dep not in outputs)
    except RlmakeError as error:
        say(f"rlmake: error: {error}")
        return None
    paths = {os.path.normpath(os.path.join(directory, file)) for file in files}
    return {path for path in paths if not _is_state(path, directory)}


def _is_state(path: str, directory: str) -> bool:
    state_dir = os.path.join(directory, ".rlmake")
    return path == state_dir or path.startswith(state_dir + os.sep)


def _stats(paths: Iterable[str]) -> dict[str, tuple[int, ...] | None]:
    return {path: _stat(path) for path in paths}


def _stat(path: str) -> tuple[int, ...] | None:
    """What an edit moves (ctime moves even when the mtime is put back); None: missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _changed(watched: set[str] | None, before: dict[str, tuple[int, ...] | None]) -> set[str]:
    return {path for path in watched or () if _stat(path) != before[path]}


def _changes(watchfiles, directory: str) -> Generator[set[str], None, None]:
    """The paths changed under `directory`, a burst at a time (none every _WAKE_MS, so
    that the first call returns once the watcher runs). One watcher for the whole
    watch: what changes while a build runs is kept for the next call."""
    for batch in watchfiles.watch(directory, debounce=_DEBOUNCE_MS, step=_STEP_MS,
                                  watch_filter=None, raise_interrupt=True,
                                  rust_timeout=_WAKE_MS, yield_on_timeout=True):
        yield {os.path.abspath(path) for _, path in batch}


def _plan_changes(project: Project | None, open_project: Callable[[], Project],
                  targets: list[str]) -> Callable[[set[str]], set[str]]:
    """`changes(paths)`: of files changed that no build reads, none if the plan is still
    current, else those to name: the ones a glob() now matches or the plan now reads,
    or all of them when there are none (a path whose existence a rule asks about)."""
    def changes(paths: set[str]) -> set[str]:
        if not paths or project is None or not project.plan_outdated(targets):
            return set()
        try:
            fresh = open_project()
            reads = set(fresh.plan(targets, store=False).sources) | fresh.globbed()
        except RlmakeError:
            return paths
        return paths & {os.path.join(fresh.directory, path) for path in reads} or paths
    return changes


def _next_change(changes: Generator[set[str], None, None], directory: str, watched: set[str] | None,
                 before: dict[str, tuple[int, ...] | None],
                 plan_changes: Callable[[set[str]], set[str]]) -> set[str]:
    """Wait for a burst that changed a watched file since `before` (an event the build
    already saw, kept by the watcher, is no change), or that changed other files so that
    the plan is out of date (a new glob() match); with nothing watched (the Rulesfile
    does not load), any file outside .rlmake/ counts."""
    while True:
        touched = next(changes)
        if watched is None:
            touched = {path for path in touched
                       if not _is_state(path, directory) and os.path.exists(path)}
            if touched:
                return touched
            continue
        edited = {path for path in touched & watched if _stat(path) != before[path]}
        if edited:
            return edited
        others = plan_changes({path for path in touched - watched
                               if not _is_state(path, directory)})
        if others:
            return others


def _names(paths: set[str], directory: str) -> str:
    names = sorted(os.path.relpath(path, directory) for path in paths)
    shown = ", ".join(names[:_SHOWN_NAMES])
    return shown + (f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else "")
