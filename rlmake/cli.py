"""The command line: thin click commands over project.Project.

The only module that imports click, and the one place where RlmakeError
becomes an exit status.
"""

from __future__ import annotations

import functools
import os

import click

from rlmake import __version__
from rlmake.errors import Interrupted, RlmakeError, UsageError
from rlmake.build_command import check_written_files, open_project, split_arguments
from rlmake.guard import exit_status, say


class _Group(click.Group):
    """Where errors and signals become exit statuses, for every command."""

    def make_context(self, *args, **kwargs):
        """Ctrl-C while click reads the command line: click would say 'Aborted!' and exit
        1; it is an interrupt like any other."""
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            say("rlmake: interrupted")
            raise SystemExit(Interrupted.exit_code) from None

    def invoke(self, ctx: click.Context):
        status = exit_status(lambda: super(_Group, self).invoke(ctx))
        if status:
            ctx.exit(status)


def project_options(command):
    """-C DIR and -f PATH, on every command, meaning the same everywhere."""
    @click.option("-C", "--directory", "directory", default=None, metavar="DIR",
                  type=click.Path(file_okay=False, exists=True),
                  help="Change to DIR before doing anything (as make -C).")
    @click.option("-f", "--file", "file", default=None, metavar="PATH",
                  help="Use this Rulesfile (relative to -C); its directory is the project.")
    @functools.wraps(command)
    def wrapper(*args, directory, file, **kwargs):
        given = click.get_current_context().find_root().obj or {}
        return command(*args, directory=directory or given.get("directory") or ".",
                       file=file or given.get("file"), **kwargs)
    return wrapper


def complete_targets(ctx: click.Context, param, incomplete: str):
    """Shell completion of TARGET arguments: the targets the Rulesfile names (explicit
    rules and their outputs). Quiet on any error: a half-typed command line must never
    print a traceback into the shell."""
    try:
        given = ctx.find_root().params
        directory = ctx.params.get("directory") or given.get("directory") or "."
        project = open_project(directory, ctx.params.get("file") or given.get("file"))
        names = sorted(project.expander.explicit)
    except Exception:       # noqa: BLE001 - completion must stay silent
        return []
    return [name for name in names if name.startswith(incomplete)]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="rlmake")
@click.option("-C", "--directory", "directory", default=None, metavar="DIR",
              type=click.Path(file_okay=False, exists=True),
              help="Change to DIR before doing anything (as make -C).")
@click.option("-f", "--file", "file", default=None, metavar="PATH",
              help="Use this Rulesfile (relative to -C); its directory is the project.")
@click.pass_context
def main(ctx, directory, file):
    """rlmake: a Makefile-style build tool that hashes content, caches results and
    explains every rebuild.

    -C and -f may come before the command (rlmake -C DIR build) or after it."""
    ctx.obj = {"directory": directory, "file": file}


@main.command()
@project_options
@click.option("-n", "--dry-run", is_flag=True,
              help="Print the commands that would run (with -v, why); run nothing.")
@click.option("-B", "--always-make", "force", is_flag=True,
              help="Rebuild the requested targets and everything they need.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Run at most N jobs at once (default: the number of CPUs; with "
                   "--executor dask, the threads of the cluster's workers).")
@click.option("-k", "--keep-going", is_flag=True,
              help="After a failure, build everything that does not depend on it.")
@click.option("-v", "--verbose", is_flag=True,
              help="Say for each job whether it runs, and why, and print its command as it "
                   "starts (and show a Dask cluster's own log lines).")
@click.option("--no-wait", is_flag=True,
              help="Exit with status 2 at once if another build holds this project.")
@click.option("--hash", "hash_mode", type=click.Choice(["content", "fast"]), default=None,
              help="content (default): digest file bytes; fast: digest size and mtime only.")
@click.option("--cache", "cache_url", default=None, metavar="URL",
              help="A shared artifact cache: s3://bucket/prefix or a directory "
                   "(also RLMAKE_CACHE). Read-only unless --cache-write.")
@click.option("--cache-write", is_flag=True, default=None,
              help="Also store results in the shared cache (trusted CI only).")
@click.option("--no-local-cache", is_flag=True, default=None,
              help="Do not use the project's own store in .rlmake/cache.")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "dask"]), default=None,
              help="Where commands run: here (default) or on a Dask cluster.")
@click.option("--scheduler", "dask_scheduler", default=None, metavar="ADDRESS",
              help="The Dask scheduler, tcp://HOST:8786 (none: a LocalCluster for testing).")
@click.option("--dask-files", "file_mode", type=click.Choice(["auto", "shared", "staged"]),
              default=None, help="How files reach Dask workers: a shared filesystem, or "
                                 "staged through the --cache store (auto: shared if visible).")
@click.option("--report", "report_path", default=None, metavar="FILE",
              help="Write a JSON report of the build (every job, status, reason, duration).")
@click.option("--junit", "junit_path", default=None, metavar="FILE",
              help="Write a JUnit XML file, one testcase per job, for CI test views.")
@click.option("--trace", "trace_path", default=None, metavar="FILE",
              help="Write a Chrome trace of the build (jobs on their parallel slots, "
                   "rlmake's phases) for ui.perfetto.dev or chrome://tracing.")
@click.option("--watch", "watch", is_flag=True,
              help="After the build, build again whenever a source, the Rulesfile or "
                   "rlmake.toml changes, until Ctrl-C (needs rlmake[watch]).")
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...",
                shell_complete=complete_targets)
def build(directory, file, arguments, **flags):
    """Build TARGETs (default: the Rulesfile's `default`, else its first rule).

    NAME=VALUE arguments override the Rulesfile's vars.

    Exit status: 0 success; 1 a command failed; 2 a Rulesfile or usage error (also a
    Dask scheduler that cannot be reached or has no workers); 3 the executor failed
    mid-build (the Dask scheduler went away); 130 interrupted."""
    from rlmake.build_command import BuildFlags, run_build

    run_build(directory, file, arguments, BuildFlags(**flags), say)


@main.command(name="list")
@project_options
def list_targets(directory, file):
    """List the targets that rules define, with their descriptions."""
    from rlmake.reporters.console import readable_rule

    project = open_project(directory, file)
    expander = project.expander
    rows = []
    for instance in expander.explicit_order:
        job = expander.make_job(instance)
        kind = "phony" if job.phony else ("aggregate" if job.is_aggregate else "")
        rows.append((job.target, kind, job.description or ""))
    for pattern in expander.patterns:
        description = expander.pattern_description(pattern) or \
            readable_rule(pattern.spec.description or "")
        rows.append((pattern.target, "pattern", description))
    width = max((len(target) for target, _, _ in rows), default=0)
    for target, kind, description in rows:
        detail = "  ".join(part for part in (f"[{kind}]" if kind else "", description) if part)
        click.echo(f"{target:<{width}}  {detail}".rstrip())


@main.command()
@project_options
@click.option("--format", "output_format", type=click.Choice(["dot", "json"]), default="dot",
              show_default=True)
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...",
                shell_complete=complete_targets)
def graph(directory, file, output_format, arguments):
    """Print the job graph of TARGETs."""
    from rlmake.rules import graph as job_graph

    targets, overrides = split_arguments(arguments)
    plan = open_project(directory, file, overrides).plan(targets)
    render = job_graph.to_dot if output_format == "dot" else job_graph.to_json
    click.echo(render(plan), nl=False)


@main.command()
@project_options
@click.option("-o", "--output", default="compile_commands.json", show_default=True,
              metavar="FILE", help="Where to write it (relative to the project; - for stdout).")
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...",
                shell_complete=complete_targets)
def compdb(directory, file, output, arguments):
    """Write a compilation database (compile_commands.json) for clangd and IDEs: one entry
    per C-family source a job of TARGETs compiles (default: the default targets)."""
    import json

    from rlmake import compdb as database

    targets, overrides = split_arguments(arguments)
    project = open_project(directory, file, overrides)
    found = database.entries(project.plan(targets).jobs, project.directory)
    if output == "-":
        click.echo(json.dumps(found, indent=2))
        return
    path = os.path.join(project.directory, output)
    database.write(found, path)
    count = f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}"
    click.echo(f"wrote {count} to {os.path.relpath(path)}", err=True)


@main.command()
@project_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...",
                shell_complete=complete_targets)
def why(directory, file, as_json, arguments):
    """Why TARGET will (or won't) be rebuilt, and why it last was, down to the
    source that changed. Without TARGET: every stale job of the default targets."""
    import json

    targets, overrides = split_arguments(arguments)
    answers = open_project(directory, file, overrides).why(targets)
    if as_json:
        click.echo(json.dumps([{"target": now.target, "next": now.to_json(),
                                "last": last.to_json() if last else None}
                               for now, last in answers], indent=2))
        return
    if not answers:
        click.echo("everything is up to date")
    for now, last in answers:
        click.echo("\n".join(now.lines()))
        if last is not None:
            click.echo("\n".join(last.lines()))


@main.command()
@project_options
@click.option("--files", "list_files", is_flag=True,
              help="Every file the recorded builds read (r) or wrote (w).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many executions to list.")
@click.option("--depth", type=click.IntRange(min=0), default=None, metavar="N",
              help="log FILE: show N levels of inputs, each depfile input on its own line "
                   "(default: every level, a job's depfile sources folded into one line).")
@click.argument("what", required=False, metavar="[-|EXEC_ID|FILE]")
def log(directory, file, list_files, as_json, limit, depth, what):
    """The recorded builds. `log -`: the last one, with its jobs; `log EXEC_ID` (any
    unique prefix): that one; `log FILE`: where FILE's current content came from, each
    file once (a file reached again says "see above")."""
    import json
    import os

    from rlmake import history

    project = open_project(directory, file)
    emit = (lambda data, lines: click.echo(json.dumps(data, indent=2))) if as_json else \
        (lambda data, lines: click.echo("\n".join(lines)))
    with project.records() as state:
        if list_files:
            summary = state.file_summary()
            emit([{"path": p, "mode": m, "digest": d, "when": w} for p, m, d, w in summary],
                 history.files_table(summary))
            return
        if what is None and depth is not None:
            raise UsageError("--depth is for `log FILE`: name the file")
        if what is None:
            executions = state.executions(limit)
            emit([history.execution_json(e) for e in executions],
                 history.executions_table(executions))
            return
        path = os.path.normpath(what)
        is_file = what != "-" and (os.path.exists(os.path.join(project.directory, path))
                                   or path in state.written_digests())
        if not is_file and depth is not None:
            raise UsageError(f"--depth is for `log FILE`, and '{what}' is no file rlmake "
                             "knows")
        if not is_file:
            matches = state.executions(1) if what == "-" else state.executions_starting(what)
            if len(matches) != 1:
                problem = "no build has been recorded" if what == "-" else (
                    f"no execution or file '{what}'" if not matches
                    else f"'{what}' matches {len(matches)} executions; give more of the id")
                raise UsageError(problem)
            runs = state.runs_of(matches[0].id)
            kept = state.kept_in(matches[0].id)
            emit({**history.execution_json(matches[0]), "runs": [history.run_json(r) for r in runs],
                  "kept": history.kept_json(kept)},
                 history.execution_detail(matches[0], runs, kept, records=state))
            return
    origin = project.provenance(path, depth)
    emit(origin.to_json(), history.provenance_lines(origin, fold=depth is None))


@main.command()
@project_options
@click.option("-o", "--output", default="rlmake-report.html", show_default=True, metavar="FILE",
              help="Where to write the page (relative to the current directory).")
@click.argument("exec_id", required=False, metavar="[EXEC_ID]")
def report(directory, file, output, exec_id):
    """Write one self-contained HTML page about a recorded build (default: the last; EXEC_ID
    any unique prefix, as `log` takes it): a timeline of its jobs on their parallel slots,
    the critical path, the slowest jobs and rules, cache hit rates, and each job's command,
    reasons and output on click."""
    from rlmake.report.page import render
    from rlmake.report.timeline import report_data
    from rlmake.reporters.reportfile import write_atomically

    project = open_project(directory, file)
    check_written_files(project, {"-o": output})
    with project.records() as state:
        execution = recorded_execution(state, exec_id or "-")
        data = report_data(execution, state.runs_of(execution.id),
                           state.cache_use_of(execution.id))
    path = os.path.abspath(output)
    write_atomically(path, render(data))
    click.echo(f"wrote the report of build {execution.id} to {path}")


def recorded_execution(state, what: str):
    """The recorded build `what` names: `-` for the last, else a unique prefix of its id."""
    matches = state.executions(1) if what == "-" else state.executions_starting(what)
    if len(matches) != 1:
        raise UsageError("no build has been recorded" if what == "-" else (
            f"no execution '{what}'" if not matches
            else f"'{what}' matches {len(matches)} executions; give more of the id"))
    return matches[0]


@main.command()
@project_options
@click.option("--dry-run", "-n", "dry_run", is_flag=True, help="Say what would be removed.")
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...",
                shell_complete=complete_targets)
def clean(directory, file, dry_run, arguments):
    """Remove the outputs rlmake wrote (of TARGETs and what they need, or all).
    Never a source, never a file it did not write or that changed since."""
    targets, overrides = split_arguments(arguments)
    results = open_project(directory, file, overrides).clean(targets, dry_run, _say_waiting)
    for path, action in results:
        click.echo(f"{path}: {action}")
    if not results:
        click.echo("nothing to clean")


@main.group()
def cache():
    """The artifact caches: `stats` and `gc`, for the project's own store in .rlmake/cache
    and for a shared one (--cache URL, RLMAKE_CACHE or [cache] url in rlmake.toml)."""


_CACHE_URL_HELP = ("A shared store: s3://bucket/prefix or a directory (also RLMAKE_CACHE, "
                   "[cache] url in rlmake.toml; RLMAKE_CACHE_ENDPOINT for MinIO and others).")


@cache.command()
@project_options
@click.option("--cache", "cache_url", default=None, metavar="URL", help=_CACHE_URL_HELP)
def stats(directory, file, cache_url):
    """Hits, misses and bytes of the recorded builds; the local store's entries and size;
    and, when a shared store is named, its records, blobs, size and oldest and newest use.

    An S3 store keeps no time of use: its ages are since each entry was stored."""
    import time

    from rlmake.cache import housekeeping

    project = open_project(directory, file)
    settings = project.build_config(cache_url=cache_url).cache
    with project.records() as state:
        builds, restored, misses, bytes_restored, bytes_stored = state.cache_totals()
    size = housekeeping.format_size
    click.echo(f"builds recorded:  {builds}")
    click.echo(f"restored (hits):  {restored}")
    click.echo(f"misses:           {misses}")
    click.echo(f"bytes restored:   {size(bytes_restored)}")
    click.echo(f"bytes stored:     {size(bytes_stored)}")
    now = time.time()
    stores = [("local store", project.local_store()),
              ("shared store", project.shared_store(settings))]
    for label, store in stores:
        if store is not None:
            summary = housekeeping.survey(store)
            click.echo("\n".join(housekeeping.summary_lines(label, store, summary, now)))


@cache.command()
@project_options
@click.option("--max-age", metavar="AGE",
              help="Remove entries not used for AGE or longer: 30d, 12h, 90m, 45s, 2w "
                   "(S3: stored AGE or longer ago).")
@click.option("--max-size", metavar="SIZE",
              help="Keep at most SIZE, e.g. 500M or 2G; the least recently used go first.")
@click.option("--cache", "cache_url", default=None, metavar="URL", help=_CACHE_URL_HELP)
@click.option("--cache-write", is_flag=True, default=None,
              help="Allow removing from the shared store (also RLMAKE_CACHE_WRITE=1).")
@click.option("--local", "local_only", is_flag=True,
              help="Act on the project's own store even when a shared one is configured.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def gc(directory, file, max_age, max_size, cache_url, cache_write, local_only, dry_run):
    """Remove entries from one artifact store: those unused for --max-age, then the least
    recently used until it fits in --max-size (give either or both).

    \b
    Which store:
      no shared store named   the project's own, .rlmake/cache (under its lock)
      --cache URL, RLMAKE_CACHE or [cache] url
                              that shared store only; needs --cache-write
      --local                 the project's own, whatever is configured

    A shared store has no lock: a build that wants an entry removed meanwhile finds
    a miss and runs the job. A directory store's age is since an entry's last use
    (a hit touches it); S3 keeps no time of use, so there it is since it was stored."""
    from rlmake.cache import housekeeping

    limits = housekeeping.Limits.parse(max_age, max_size)
    if local_only and cache_url:
        raise UsageError("--local and --cache name different stores: give one of them")
    project = open_project(directory, file)
    settings = project.build_config(cache_url=cache_url, cache_write=cache_write).cache
    if settings.url and not local_only:
        label, collected = "shared store", project.collect_shared_garbage(settings, limits,
                                                                          dry_run)
    else:
        label, collected = "local store", project.collect_garbage(limits, _say_waiting,
                                                                  dry_run)
    click.echo("\n".join(housekeeping.collected_lines(label, collected, dry_run)))
    if collected.error:
        raise RlmakeError(f"{collected.store}: gc stopped early: {collected.error}")


def _say_waiting(message: str) -> None:
    click.echo(f"rlmake: {message}", err=True)
