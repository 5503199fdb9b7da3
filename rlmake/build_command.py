"""`rlmake build` apart from its command line: what click's `build` command runs, and
what the entry point runs for a plain `rlmake build` without loading click at all
(the command run most, on every editor save: click's import is most of its time)."""

from __future__ import annotations

import os
import sys
from typing import Callable, NamedTuple

from rlmake.errors import UsageError


class BuildFlags(NamedTuple):
    """`rlmake build`'s options; the defaults are what no option on the command line means
    (a test holds them to click's)."""

    dry_run: bool = False
    force: bool = False
    jobs: int | None = None
    keep_going: bool = False
    verbose: bool = False
    no_wait: bool = False
    hash_mode: str | None = None
    cache_url: str | None = None
    cache_write: bool | None = None
    no_local_cache: bool | None = None
    executor_kind: str | None = None
    dask_scheduler: str | None = None
    file_mode: str | None = None
    report_path: str | None = None
    junit_path: str | None = None
    trace_path: str | None = None
    watch: bool = False


def run_build(directory: str, file: str | None, arguments, flags: BuildFlags,
              say: Callable[[str], None]) -> None:
    """Build as the command line asked: ARGUMENTS are targets and NAME=VALUE overrides."""
    from rlmake.model import BuildOptions
    from rlmake.reporters.console import ConsoleReporter

    targets, overrides = split_arguments(arguments)
    options = BuildOptions(jobs=flags.jobs, keep_going=flags.keep_going, force=flags.force,
                           dry_run=flags.dry_run)
    written = {"--report": flags.report_path, "--junit": flags.junit_path,
               "--trace": flags.trace_path}

    def build_in(project):
        config = project.build_config(
            options, hash_mode=flags.hash_mode, cache_url=flags.cache_url,
            cache_write=flags.cache_write, local_cache=False if flags.no_local_cache else None,
            executor=flags.executor_kind, scheduler=flags.dask_scheduler,
            file_mode=flags.file_mode, wait=not flags.no_wait, verbose=flags.verbose,
            argv=("rlmake", *sys.argv[1:]))
        reporter = ConsoleReporter(verbose=flags.verbose, dry_run=flags.dry_run)
        check_written_files(project, written)
        if any(written.values()):
            reporter = _with_report_files(reporter, flags.report_path, flags.junit_path,
                                          flags.trace_path)
        project.build(targets, config, reporter)

    if not flags.watch:
        return build_in(open_project(directory, file, overrides))
    if flags.dry_run:
        raise UsageError("--watch builds; it cannot be combined with -n")
    from rlmake.watch import watch as watch_and_build

    watch_and_build(lambda: open_project(directory, file, overrides), build_in, targets, say)


def split_arguments(arguments) -> tuple[list[str], dict]:
    """Targets, and NAME=VALUE overrides of vars."""
    from rlmake.paths import is_text, shown

    targets, overrides = [], {}
    for argument in arguments:
        if not is_text(argument):
            raise UsageError(f"argument '{shown(argument)}' is not UTF-8; rlmake keeps "
                             "targets and paths as text")
        if "=" in argument and not argument.startswith(("/", ".")):
            from rlmake.rules.rulesfile import parse_override     # YAML only when there are overrides

            name, value = parse_override(argument)
            overrides[name] = value
        else:
            targets.append(argument)
    return targets, overrides


def open_project(directory: str, file: str | None, overrides: dict | None = None):
    from rlmake.project import Project

    return Project(directory, file, overrides)


def check_written_files(project, paths: dict[str, str | None]) -> None:
    """A file rlmake is asked to write must be named, and not be one of its own state."""
    from rlmake.paths import in_state_dir

    for flag, path in paths.items():
        if path is None:
            continue
        if not path:
            raise UsageError(f"{flag} needs a file name")
        inside = os.path.relpath(os.path.abspath(path), project.directory)
        if in_state_dir(inside):
            raise UsageError(f"{flag} {path}: that is in {project.state_dir}, where rlmake "
                             "keeps its state; write it elsewhere")


def _with_report_files(console, report_path: str | None, junit_path: str | None,
                       trace_path: str | None = None):
    from rlmake.reporters.fanout import FanOut

    reporters = [console]
    if report_path:
        from rlmake.reporters.json_report import JsonReport

        reporters.append(JsonReport(report_path))
    if junit_path:
        from rlmake.reporters.junit import JUnitReport

        reporters.append(JUnitReport(junit_path))
    if trace_path:
        from rlmake.reporters.trace import TraceReport

        reporters.append(TraceReport(trace_path))
    return FanOut(*reporters)
