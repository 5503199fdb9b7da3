"""The command line: thin click commands over project.Project.

The only module that imports click, and the one place where RlmakeError
becomes an exit status.
"""

from __future__ import annotations

import functools

import click

from rlmake import __version__
from rlmake.errors import RlmakeError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RlmakeError as error:
            click.echo(f"rlmake: error: {error}", err=True)
            ctx.exit(error.exit_code)


def project_options(command):
    @click.option("-C", "--directory", "directory", default=".", metavar="DIR",
                  type=click.Path(file_okay=False, exists=True),
                  help="Change to DIR before doing anything (as make -C).")
    @click.option("-f", "--file", "file", default=None, metavar="PATH",
                  help="Use this Rulesfile (relative to -C); its directory is the project.")
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)
    return wrapper


def split_arguments(arguments) -> tuple[list[str], dict]:
    """Targets, and NAME=VALUE overrides of vars."""
    from rlmake.rulesfile import parse_override

    targets, overrides = [], {}
    for argument in arguments:
        if "=" in argument and not argument.startswith(("/", ".")):
            name, value = parse_override(argument)
            overrides[name] = value
        else:
            targets.append(argument)
    return targets, overrides


def open_project(directory: str, file: str | None, overrides: dict | None = None):
    from rlmake.project import Project

    return Project(directory, file, overrides)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="rlmake")
def main():
    """rlmake: a Makefile-style build tool that hashes content, caches results and
    explains every rebuild."""


@main.command()
@project_options
@click.option("-n", "--dry-run", is_flag=True,
              help="Print the commands that would run (with -v, why); run nothing.")
@click.option("-B", "--always-make", "force", is_flag=True,
              help="Rebuild the requested targets and everything they need.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Run at most N jobs at once (default: the number of CPUs).")
@click.option("-k", "--keep-going", is_flag=True,
              help="After a failure, build everything that does not depend on it.")
@click.option("-v", "--verbose", is_flag=True, help="Say for each job whether it ran, and why.")
@click.option("--no-wait", is_flag=True,
              help="Exit with status 2 at once if another build holds this project.")
@click.option("--hash", "hash_mode", type=click.Choice(["content", "fast"]), default=None,
              help="content (default): digest file bytes; fast: digest size and mtime only.")
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...")
def build(directory, file, dry_run, force, jobs, keep_going, verbose, no_wait, hash_mode,
          arguments):
    """Build TARGETs (default: the Rulesfile's `default`, else its first rule).

    NAME=VALUE arguments override the Rulesfile's vars."""
    import os
    import sys

    from rlmake.reporters.console import ConsoleReporter
    from rlmake.scheduler import BuildOptions

    targets, overrides = split_arguments(arguments)
    project = open_project(directory, file, overrides)
    options = BuildOptions(jobs=jobs or os.cpu_count() or 1, keep_going=keep_going,
                           force=force, dry_run=dry_run)
    reporter = ConsoleReporter(verbose=verbose, dry_run=dry_run)
    project.build(targets, options, reporter, argv=["rlmake", *sys.argv[1:]],
                  wait=not no_wait, hash_mode=hash_mode)


@main.command(name="list")
@project_options
def list_targets(directory, file):
    """List the targets that rules define, with their descriptions."""
    project = open_project(directory, file)
    expander = project.expander
    rows = []
    for instance in expander.explicit_order:
        job = expander.make_job(instance)
        kind = "phony" if job.phony else ("aggregate" if job.is_aggregate else "")
        rows.append((job.target, kind, job.description or ""))
    for pattern in expander.patterns:
        rows.append((pattern.target, "pattern", pattern.spec.description or ""))
    width = max((len(target) for target, _, _ in rows), default=0)
    for target, kind, description in rows:
        detail = "  ".join(part for part in (f"[{kind}]" if kind else "", description) if part)
        click.echo(f"{target:<{width}}  {detail}".rstrip())


@main.command()
@project_options
@click.option("--format", "output_format", type=click.Choice(["dot", "json"]), default="dot",
              show_default=True)
@click.argument("arguments", nargs=-1, metavar="[TARGET|NAME=VALUE]...")
def graph(directory, file, output_format, arguments):
    """Print the job graph of TARGETs."""
    from rlmake import graph as job_graph

    targets, overrides = split_arguments(arguments)
    plan = open_project(directory, file, overrides).plan(targets)
    render = job_graph.to_dot if output_format == "dot" else job_graph.to_json
    click.echo(render(plan), nl=False)
