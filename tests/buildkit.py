"""Helpers for end-to-end build tests: run the real `rlmake` console script in a project
directory (CI=1, so output is plain lines), and read back which jobs ran.

Two independent ways to see what ran:
- `BuildResult.ran` / `.cached`: targets parsed from the `-v` lines
  (`Run    T: ...`, `Miss   T: ...`, `Cached T: ...`);
- `Project.take_log()`: lines that commands append to `ran.log` themselves.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from checkout import RLMAKE

_VERBOSE_LINE = re.compile(r"^(Run|Miss|Cached) +(.+?): ")
LOG = "ran.log"


def rlmake_exe() -> list[str]:
    """The command that runs the rlmake under test (see checkout.py)."""
    return list(RLMAKE)


def build_env(**extra: str) -> dict[str, str]:
    # no RLMAKE_* settings (hash mode, shared caches, ...) leak in from the caller
    env = {name: value for name, value in os.environ.items() if not name.startswith("RLMAKE_")}
    env["CI"] = "1"
    env.update(extra)
    return env


@dataclass
class BuildResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def _verbose(self, kinds: tuple[str, ...]) -> list[str]:
        found = []
        for line in self.lines:
            match = _VERBOSE_LINE.match(line)
            if match and match.group(1) in kinds:
                found.append(match.group(2))
        return found

    @property
    def ran(self) -> set[str]:
        """Targets that `-v` says ran (Run or Miss)."""
        return set(self._verbose(("Run", "Miss")))

    @property
    def cached(self) -> set[str]:
        return set(self._verbose(("Cached",)))

    def describe(self) -> str:
        return (f"$ rlmake {' '.join(self.args)}\nexit {self.returncode} "
                f"({self.elapsed:.2f}s)\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def run_in_process(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run rlmake's click group here, with `env` as the whole environment and `cwd` as the
    working directory; (exit status, stdout, stderr)."""
    from click.testing import CliRunner

    from rlmake.cli import main

    changes: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    changes.update(env)
    saved_argv = sys.argv
    sys.argv = ["rlmake", *argv]        # what the build records as its command line
    try:
        with contextlib.chdir(cwd):
            result = CliRunner().invoke(main, argv, env=changes)
    finally:
        sys.argv = saved_argv
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"rlmake raised {result.exception!r}\n{result.stdout}\n"
                             f"{result.stderr}") from result.exception
    return result.exit_code, result.stdout, result.stderr


AGE_SECONDS = 10
CONFIG = "rlmake.toml"


class Project:
    """A project directory under tmp_path, and the real CLI run in it.

    `aged=True` simulates time passing between builds, as it does for a real user:
    after each `build()`, every project file (not .rlmake/) written in the last few
    seconds gets an mtime AGE_SECONDS in the past; older files are left alone. A
    file written within a second of being hashed is never trusted by its stat, so
    without this a fast test never reaches rlmake's stat-based shortcuts (the
    digest memo, the up-to-date snapshot of a no-op build).
    """

    def __init__(self, root: Path, aged: bool = False, local_cache: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.aged = aged
        self.local_cache = local_cache
        if not local_cache:
            # Commands here log that they ran; a restore from rlmake's local artifact cache
            # (on by default) brings outputs back without running them. These tests are
            # about when commands run, so they switch it off; test_build_semantics has a
            # section on the cache as it is by default.
            self.write(CONFIG, "[cache]\nlocal = false\n")

    def age(self) -> None:
        """Move the mtime of every recently written project file AGE_SECONDS into the past."""
        now = time.time_ns()
        past = now - AGE_SECONDS * 1_000_000_000
        for directory, subdirs, files in os.walk(self.root):
            if directory == str(self.root):
                subdirs[:] = [d for d in subdirs if d != ".rlmake"]
            for name in files:
                path = os.path.join(directory, name)
                stat = os.lstat(path)
                if stat.st_mtime_ns > now - 5_000_000_000:
                    os.utime(path, ns=(past, past), follow_symlinks=False)

    # --- files ----------------------------------------------------------------------

    def rules(self, text: str, name: str = "Rulesfile.yaml") -> "Project":
        text = textwrap.dedent(text)
        self.write(name, text[1:] if text.startswith("\n") else text)
        return self

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text()

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def touch_later(self, relative: str) -> None:
        """Give a file a new mtime (a whole second later) without changing its bytes."""
        path = self.root / relative
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))

    def take_log(self) -> list[str]:
        """The lines commands appended to ran.log since the last call (the log is emptied)."""
        path = self.root / LOG
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        path.unlink()
        return lines

    # --- running --------------------------------------------------------------------

    def build(self, *args: str, expect: int | None = 0, timeout: float = 60,
              env: dict[str, str] | None = None, verbose: bool = True) -> BuildResult:
        """`rlmake build -v ARGS` in the project; checks the exit status unless expect is None.

        The CLI runs in this process (click's runner), its commands as real processes:
        a fresh interpreter per build would cost the suite minutes. Tests about signals,
        locks and the process itself use `start`, which runs rlmake as its own process."""
        argv = ["build", *(["-v"] if verbose else []), *map(str, args)]
        started = time.monotonic()
        exit_code, stdout, stderr = run_in_process(argv, self.root, env or build_env())
        result = BuildResult(argv, exit_code, stdout, stderr, time.monotonic() - started)
        if self.aged:
            self.age()
        if expect is not None:
            assert result.returncode == expect, result.describe()
        return result

    def cli(self, *args: str, expect: int | None = 0) -> BuildResult:
        """Any `rlmake ARGS` in the project, in-process like `build`."""
        started = time.monotonic()
        result = BuildResult(list(args), *run_in_process(list(args), self.root, build_env()),
                             time.monotonic() - started)
        if expect is not None:
            assert result.returncode == expect, result.describe()
        return result

    def noop(self, *args: str) -> BuildResult:
        """A build that must find everything up to date and run nothing (ran.log is emptied
        first, so only this build's entries count)."""
        self.take_log()
        result = self.build(*args)
        assert result.ran == set(), result.describe()
        assert self.take_log() == [], result.describe()
        return result

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start `rlmake build -v ARGS` in the background, in its own process group."""
        return subprocess.Popen([*rlmake_exe(), "build", "-v", *map(str, args)], cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env or build_env(), start_new_session=True)

    def start_logged(self, name: str, *args: str) -> subprocess.Popen:
        """Start `rlmake build ARGS` with stdout and stderr going to files beside the project
        (NAME.out, NAME.err), so a test can watch what it says while it runs."""
        out = open(self.root.parent / f"{name}.out", "w")
        err = open(self.root.parent / f"{name}.err", "w")
        with out, err:
            return subprocess.Popen([*rlmake_exe(), "build", *map(str, args)], cwd=self.root,
                                    stdout=out, stderr=err, env=build_env(),
                                    start_new_session=True)

    def said(self, name: str) -> str:
        """What a build started with start_logged has printed so far (stdout and stderr)."""
        return "".join((self.root.parent / f"{name}.{kind}").read_text()
                       for kind in ("out", "err"))

    def wait_until_said(self, name: str, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.said(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not say {text!r} within {timeout}s:\n"
                                     + self.said(name))
            time.sleep(0.02)

    def wait_for(self, relative: str, timeout: float = 10.0) -> None:
        """Poll until a file exists (a job has reached a known point)."""
        deadline = time.monotonic() + timeout
        while not (self.root / relative).exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{relative} did not appear within {timeout}s")
            time.sleep(0.02)

    def wait_for_line(self, relative: str, timeout: float = 10.0) -> str:
        """Poll until a file holds a whole line (a command wrote, say, its pid); the line."""
        deadline = time.monotonic() + timeout
        while True:
            path = self.root / relative
            text = path.read_text() if path.exists() else ""
            if text.endswith("\n"):
                return text.splitlines()[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"{relative} held no whole line within {timeout}s")
            time.sleep(0.02)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.root / ".rlmake" / "state.db")


def finish(process: subprocess.Popen, timeout: float = 30) -> BuildResult:
    """Wait for a background build and collect its output."""
    started = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        stdout, stderr = process.communicate()
        raise AssertionError(f"rlmake did not finish within {timeout}s\n{stdout}\n{stderr}") from None
    return BuildResult(list(map(str, process.args[1:])), process.returncode, stdout, stderr,
                       time.monotonic() - started)


def kill_group(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    """Signal the process group of a build started with Project.start (its pid is the pgid)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as dead
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


# A job command that holds its build until the test creates `release` (at most ~30 s).
HOLD = ("touch started; i=0; while [ ! -e release ] && [ $i -lt 600 ]; "
        "do sleep 0.05; i=$((i+1)); done")


@pytest.fixture(params=["fresh", "aged"])
def proj(tmp_path, request) -> Project:
    """A project, once with files as fresh as the test writes them, once aged between builds."""
    return Project(tmp_path / "proj", aged=request.param == "aged")


@pytest.fixture
def cached_proj(tmp_path) -> Project:
    """A project with rlmake's default settings: the local artifact cache is on."""
    return Project(tmp_path / "proj", aged=True, local_cache=True)


@pytest.fixture
def fresh_proj(tmp_path) -> Project:
    """A project whose files are not aged: for tests about timing, signals and locking."""
    return Project(tmp_path / "proj")


__all__ = ["AGE_SECONDS", "BuildResult", "CONFIG", "cached_proj", "HOLD", "LOG", "Project",
           "fresh_proj", "build_env", "finish", "kill_group", "pid_alive", "proj", "rlmake_exe",
           "run_in_process",
           "wait_until_dead"]
