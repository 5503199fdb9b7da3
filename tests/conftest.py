"""Shared helpers: write a project into tmp_path and run the real CLI on it."""

from __future__ import annotations

import compileall
import contextlib
import signal
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from checkout import RLMAKE, ROOT

from rlmake.cli import main

# the project fixtures (proj, fresh_proj, cached_proj) of the end-to-end build tests, and
# the S3 server shared by the tests that use one (moto_server)
pytest_plugins = ["buildkit", "s3server"]


def _signals_as_at_a_terminal() -> None:
    """The builds the tests start must get Ctrl-C and hangups as a user at a terminal does.
    A harness that runs the suite in the background (a non-interactive shell ignores
    SIGINT there) or under nohup would pass SIG_IGN on to them, and rlmake keeps a signal
    ignored that it was started ignoring, as make does."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


_signals_as_at_a_terminal()

# Tests of ten seconds or more (on a quiet 2-CPU machine) that need no module-scoped
# fixture. They run first: pytest-xdist hands out the collection in order, so a long test
# collected late would keep one worker busy while the other sits idle at the end.
LONG_TESTS = (
    "test_fault_injection.py::test_builds_killed_at_random_never_leave_a_wrong_result",
    "test_model_check.py::test_model_check::",
    "test_dask_worker_death.py::test_a_rerun_waits_for_what_the_killed_copy_left_running",
    "test_dask_worker_death.py::test_a_killed_workers_command_dies_and_its_rerun_does_not",
    "test_loader_fuzz.py::test_generated_rulesfiles_never_crash",
    "test_why_log_clean.py::test_why_on_a_2000_job_project_that_is_up_to_date",
    "test_model_check.py::test_model_check_through_the_cli::",
    "test_loader_fuzz.py::test_mutated_rulesfiles_never_crash",
)


def _long_test_rank(item) -> int:
    """The test's place in LONG_TESTS, or len(LONG_TESTS) for any other test."""
    name = item.nodeid.rsplit("/", 1)[-1]
    return next((rank for rank, long in enumerate(LONG_TESTS) if name.startswith(long)),
                len(LONG_TESTS))


def pytest_configure(config) -> None:
    """Compile the checkout's rlmake to bytecode once, before any xdist worker starts.
    The suite starts rlmake as a process hundreds of times, and where the environment
    sets PYTHONDONTWRITEBYTECODE (as CI machines often do) each of those would compile
    every module it imports again: 60 ms of CPU a process here, minutes in all."""
    if not hasattr(config, "workerinput"):      # the controller (or a run without xdist)
        compileall.compile_dir(ROOT / "rlmake", quiet=1)


def pytest_collection_modifyitems(config, items) -> None:
    items.sort(key=_long_test_rank)      # stable: every other test keeps its place


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A Dask scheduler and two one-thread workers on 127.0.0.1, shared by the tests that
    only build on a cluster (each in a project of its own) and neither kill nor reshape
    it; a cluster takes seconds to start. Tests that kill part of one start their own."""
    from test_dask_executor import running_cluster

    with running_cluster(tmp_path_factory.mktemp("dask-cluster")) as started:
        yield started

DIRECTORY = object()            # a `files` value that makes a directory instead of a file


def dedent(text: str) -> str:
    """Triple-quoted YAML as written in a test, without its indentation or first newline."""
    text = textwrap.dedent(text)
    return text[1:] if text.startswith("\n") else text


def write_project(root: Path, rulesfile_text: str | None, files: dict | None = None,
                  name: str = "Rulesfile.yaml") -> Path:
    """Write a Rulesfile (dedented) and other files under `root`; return `root`.

    `files` maps project paths to text; a value of DIRECTORY makes a directory.
    Text values ending in .yaml/.yml/Rulesfile are dedented like the Rulesfile.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if rulesfile_text is not None:
        (root / name).write_text(dedent(rulesfile_text))
    for relative, content in (files or {}).items():
        path = root / relative
        if content is DIRECTORY:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith((".yaml", ".yml")) or path.name == "Rulesfile":
            content = dedent(content)
        path.write_text(content)
    return root


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def describe(self) -> str:
        text = f"exit {self.exit_code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        if self.exception is not None and not isinstance(self.exception, SystemExit):
            text += f"--- exception\n{self.exception!r}"
        return text


def run_cli(args: list[str], cwd: Path | str | None = None) -> Run:
    """Invoke rlmake's click group in-process, with `cwd` as the working directory."""
    runner = CliRunner()
    chdir = contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext()
    with chdir:
        result = runner.invoke(main, [str(a) for a in args])
    return Run(result.exit_code, result.stdout, result.stderr, result.exception)


def run_subprocess(args: list[str], cwd: Path | str) -> Run:
    """Run the rlmake under test as its own process (see checkout.py)."""
    done = subprocess.run([*RLMAKE, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    return Run(done.returncode, done.stdout, done.stderr)


def build_n(project: Path, *args: str, cwd: Path | str | None = None) -> list[str]:
    """`rlmake build -n -C project ARGS` from `cwd` (default: the project); the printed lines.

    Fails the test unless the exit status is 0 and stderr is empty.
    """
    result = run_cli(["build", "-n", "-C", str(project), *args],
                     cwd=project if cwd is None else cwd)
    assert result.exit_code == 0, result.describe()
    assert result.stderr == "", result.describe()
    return result.lines


def assert_commands(lines: list[str], expected: list[str],
                    after: dict[str, list[str]] | None = None) -> None:
    """`lines` are exactly the commands of `expected`, each as often as there, in an order
    where every key of `after` comes after each command listed for it.

    The spec fixes a dependency order, not the order of jobs that do not depend on each
    other (rlmake's scheduler may put the longest chains first), so tests say which
    commands must precede which rather than one total order.
    """
    assert sorted(lines) == sorted(expected), f"got {lines}, expected {expected} in some order"
    position = {line: index for index, line in enumerate(lines)}
    for later, earlier in (after or {}).items():
        for first in earlier:
            if first not in position or later not in position:
                continue                    # a constraint about jobs this build lacks
            assert position[first] < position[later], \
                f"{first!r} must come before {later!r} in {lines}"


__all__ = ["DIRECTORY", "Run", "assert_commands", "build_n", "dedent", "run_cli", "run_subprocess",
           "write_project"]
