"""The Dask executor end to end, against a real cluster on 127.0.0.1.

A session-scoped fixture (conftest.py, shared with the other Dask tests) starts `dask
scheduler` and two `dask worker` processes (one thread each) with the Python of the
`rlmake` console script, so that the workers can import rlmake; destructive tests (a
worker or the scheduler killed mid-build) get a fresh cluster of their own. Every build runs the installed
`rlmake` console script as a subprocess with CI=1 and no RLMAKE_* variables.

What is checked:
- examples/compile built through the cluster, files shared (auto picks shared) and
  staged through a directory store, is byte for byte what a local build makes;
- a generated 200-job project (cp and cat jobs with dependencies) likewise, both modes;
- a worker killed mid-build: the build still succeeds (Dask reruns the lost job), or
  fails clearly naming the Dask cluster;
- the scheduler killed mid-build: the build stops with status 3, its running jobs
  lost (not failed, not recorded), and a local build afterwards finishes the project
  correctly;
- usage errors: an unreachable scheduler, staged mode without a store.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checkout import RLMAKE

from buildkit import BuildResult, build_env, finish

pytestmark = pytest.mark.integration     # every test here starts real processes

distributed = pytest.importorskip("distributed")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compile"
COMPILE_PRODUCTS = ("lib.o", "prog.o", "prog2.o", "prog", "prog2")


# --- the rlmake executable and its Python -------------------------------------------------

def rlmake_exe() -> list[str]:
    return list(RLMAKE)


def rlmake_python() -> str:
    """Workers run the interpreter running the tests, so they import the same rlmake."""
    return sys.executable


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a real cluster -------------------------------------------------------------------------

@dataclass
class Cluster:
    root: Path
    python: str
    address: str = ""
    scheduler: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        with log:
            # its own session: nanny and worker process share a group we can signal
            return subprocess.Popen([self.python, "-m", "dask", *args], cwd=self.root,
                                    stdout=log, stderr=subprocess.STDOUT, env=build_env(),
                                    start_new_session=True)

    def start(self, workers: int = 2, threads: int = 1) -> None:
        scheduler_file = self.root / "scheduler.json"
        self.scheduler = self._spawn("scheduler", [
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--dashboard-address", "127.0.0.1:0", "--idle-timeout", "600",
            "--scheduler-file", str(scheduler_file)])
        # The workers start beside the scheduler (each takes a second or two to import
        # Dask) and find it through its file once it is written.
        for n in range(workers):
            self.workers.append(self._spawn(f"worker{n}", [
                "worker", "--scheduler-file", str(scheduler_file), "--nthreads", str(threads),
                "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard",
                "--dashboard-address", "127.0.0.1:0", "--name", f"w{n}",
                "--local-directory", str(self.root / f"w{n}"), "--death-timeout", "60"]))
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.address = json.loads(scheduler_file.read_text())["address"]
                break
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dask scheduler did not start:\n{self.logs()}")
            time.sleep(0.01)
        if not workers:
            return                      # a scheduler alone, as a cluster with none started
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(workers, timeout=45)

    def kill(self, process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    def stop(self) -> None:
        # SIGKILL, not SIGTERM first: a cluster here is thrown away with its directory, and
        # Dask's graceful close costs most of a second per process. The whole group, so
        # that no worker process outlives its nanny; a job's command, in a session of its
        # own, is stopped by rlmake's watcher on the worker as when a worker dies.
        processes = [p for p in (*self.workers, self.scheduler) if p is not None]
        for process in processes:
            self.kill(process, signal.SIGKILL)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def process_ids(self, process: subprocess.Popen) -> set[int]:
        """A `dask worker` process (the nanny) and the worker process(es) it started."""
        import psutil

        parent = psutil.Process(process.pid)
        return {parent.pid, *(child.pid for child in parent.children(recursive=True))}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))


@contextlib.contextmanager
def running_cluster(root: Path, workers: int = 2, threads: int = 1):
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, rlmake_python())
    try:
        cluster.start(workers, threads)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(dask_cluster):
    """The cluster shared with the other Dask tests (conftest.py)."""
    return dask_cluster


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for a test that kills part of it."""
    with running_cluster(tmp_path / "cluster") as started:
        yield started


# --- running rlmake ---------------------------------------------------------------------------

def rlmake(project: Path, *args: str, expect: int | None = 0,
           timeout: float = 90) -> BuildResult:
    argv = list(map(str, args))
    started = time.monotonic()
    done = subprocess.run([*rlmake_exe(), *argv], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env=build_env())
    result = BuildResult(argv, done.returncode, done.stdout, done.stderr,
                         time.monotonic() - started)
    if expect is not None:
        assert result.returncode == expect, result.describe()
    return result


def start_rlmake(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*rlmake_exe(), *map(str, args)], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=build_env(),
                            start_new_session=True)


def last_execution(project: Path) -> dict:
    return json.loads(rlmake(project, "log", "-", "--json").stdout)


def dask_args(cluster: Cluster, mode: str, store: Path | None) -> list[str]:
    args = ["--executor", "dask", "--scheduler", cluster.address]
    if mode == "staged":
        args += ["--dask-files", "staged", "--cache", str(store), "--cache-write",
                 "--no-local-cache"]
    return args


def assert_says_mode(result: BuildResult, cluster: Cluster, mode: str,
                     store: Path | None) -> None:
    if mode == "shared":
        expected = f"rlmake: running jobs on {cluster.address}, files on a shared filesystem at "
    else:
        expected = f"rlmake: running jobs on {cluster.address}, files staged through "
    assert expected in result.stderr, result.describe()
    if mode == "staged":
        assert str(store) in result.stderr, result.describe()


def tree(root: Path, under: tuple[str, ...]) -> dict[str, bytes]:
    """Every file below the given subdirectories of root, by relative path."""
    files = {}
    for top in under:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(root))] = path.read_bytes()
    return files


# --- examples/compile -----------------------------------------------------------------------

def copy_example(destination: Path) -> Path:
    shutil.copytree(EXAMPLE, destination, ignore=shutil.ignore_patterns(
        ".rlmake", "*.o", "prog", "prog2"))
    return destination


@pytest.fixture(scope="module")
def compile_reference(tmp_path_factory) -> Path:
    """examples/compile built locally: the bytes every other build must match."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    project = copy_example(tmp_path_factory.mktemp("compile-local") / "compile")
    rlmake(project, "build", "-j2", "--executor", "local")
    return project


@pytest.mark.parametrize("mode", ["shared", "staged"])
def test_compile_example_through_the_cluster(cluster, compile_reference, tmp_path, mode):
    project = copy_example(tmp_path / "compile")
    store = tmp_path / "store" if mode == "staged" else None
    args = dask_args(cluster, mode, store)

    first = rlmake(project, "build", "-v", *args)
    assert_says_mode(first, cluster, mode, store)
    assert first.ran == {"lib.o", "prog.o", "prog2.o", "prog", "prog2"}, first.describe()

    for name in COMPILE_PRODUCTS:
        assert (project / name).read_bytes() == (compile_reference / name).read_bytes(), \
            f"{name} differs from the local build ({mode})"
    for program in ("prog", "prog2"):
        ran = subprocess.run([f"./{program}"], cwd=project, capture_output=True, timeout=10)
        expected = subprocess.run([f"./{program}"], cwd=compile_reference, capture_output=True,
                                  timeout=10)
        assert ran.returncode == 0 and ran.stdout == expected.stdout, ran
    assert subprocess.run(["./prog"], cwd=project, capture_output=True,
                          text=True).stdout.startswith("Hello")

    record = last_execution(project)
    assert (record["status"], record["ran"], record["cached"], record["failed"]) == \
        ("succeeded", 5, 0, 0), record
    assert sorted(run["target"] for run in record["runs"]) == sorted(COMPILE_PRODUCTS), record
    if mode == "staged":
        assert any(p.is_file() for p in store.rglob("*")), "nothing was staged through the store"

    mtimes = {name: (project / name).stat().st_mtime_ns for name in COMPILE_PRODUCTS}
    second = rlmake(project, "build", "-v", *args)
    assert second.ran == set(), second.describe()
    assert {name: (project / name).stat().st_mtime_ns for name in COMPILE_PRODUCTS} == mtimes
    assert last_execution(project)["ran"] == 0


# --- a generated 200-job project ---------------------------------------------------------------

GROUPS, COPIES, PAIRS, QUADS = 4, 40, 8, 2       # 4 * (40 + 8 + 2) = 200 jobs


def _q(text: str) -> str:
    return json.dumps(text)                      # a YAML double-quoted scalar


def write_generated(root: Path) -> int:
    """cp jobs, and cat jobs over them in two levels, in groups; returns the job count."""
    root.mkdir(parents=True)
    rnd = random.Random(2026)
    lines = ["default: all", "rules:"]
    outputs: list[str] = []

    def rule(target: str, deps: list[str], command: str) -> None:
        lines.extend([f"  {_q(target)}:", f"    deps: [{', '.join(map(_q, deps))}]",
                      f"    command: {_q(command)}"])
        outputs.append(target)

    for k in range(GROUPS):
        copies = []
        for i in range(COPIES):
            source, out = f"src/g{k}/f{i}.txt", f"out/g{k}/f{i}.txt"
            (root / source).parent.mkdir(parents=True, exist_ok=True)
            size = 65536 + i if i == 0 else rnd.randrange(1, 400)
            (root / source).write_bytes(f"g{k} f{i}\n".encode() + rnd.randbytes(size))
            rule(out, [source], f"cp {source} {out}")
            copies.append(out)
        pairs = []
        for j in range(PAIRS):
            a, b, out = copies[2 * j], copies[2 * j + 1], f"cat/g{k}/p{j}.txt"
            rule(out, [a, b], f"cat {a} {b} > {out}")
            pairs.append(out)
        for j in range(QUADS):
            parts = pairs[4 * j:4 * j + 4]
            out = f"cat/g{k}/q{j}.txt"
            rule(out, parts, f"cat {' '.join(parts)} > {out}")
    jobs = len(outputs)
    lines.extend(["  all:", "    deps:"] + [f"      - {_q(out)}" for out in outputs])
    (root / "Rulesfile.yaml").write_text("\n".join(lines) + "\n")
    return jobs


@pytest.fixture(scope="module")
def generated_reference(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("generated-local") / "proj"
    assert write_generated(project) == 200
    rlmake(project, "build", "-j2", "--executor", "local")
    return project


@pytest.mark.parametrize("mode", ["shared", "staged"])
def test_generated_200_jobs_through_the_cluster(cluster, generated_reference, tmp_path, mode):
    project = tmp_path / "proj"
    write_generated(project)
    store = tmp_path / "store" if mode == "staged" else None
    result = rlmake(project, "build", "-j2", *dask_args(cluster, mode, store))
    assert_says_mode(result, cluster, mode, store)

    built, expected = tree(project, ("out", "cat")), tree(generated_reference, ("out", "cat"))
    assert len(expected) == 200
    assert sorted(built) == sorted(expected)
    different = [path for path in expected if built[path] != expected[path]]
    assert different == [], f"{len(different)} outputs differ from the local build: {different[:5]}"
    record = last_execution(project)
    assert (record["status"], record["ran"], record["failed"]) == ("succeeded", 200, 0), \
        {k: v for k, v in record.items() if k != "runs"}


# --- usage errors ---------------------------------------------------------------------------------

def test_unreachable_scheduler_is_a_usage_error(tmp_path):
    project = copy_example(tmp_path / "compile")
    address = f"tcp://127.0.0.1:{closed_port()}"
    result = rlmake(project, "build", "--executor", "dask", "--scheduler", address, expect=2,
                    timeout=60)
    assert "cannot reach the Dask scheduler" in result.stderr, result.describe()
    assert address in result.stderr, result.describe()
    assert not any((project / name).exists() for name in COMPILE_PRODUCTS)
    # the project is not left locked or half recorded: a local build then works
    rlmake(project, "build", "-j2", "--executor", "local")
    assert last_execution(project)["ran"] == 5


def test_staged_without_a_store_is_a_usage_error(cluster, tmp_path):
    project = copy_example(tmp_path / "compile")
    result = rlmake(project, "build", "--executor", "dask", "--scheduler", cluster.address,
                    "--dask-files", "staged", expect=2)
    assert "--dask-files staged needs a shared store" in result.stderr, result.describe()
    assert "--cache" in result.stderr, result.describe()
    assert not any((project / name).exists() for name in COMPILE_PRODUCTS)


def test_usage_error_from_the_executor_records_no_running_build(cluster, tmp_path):
    """A build stopped by a usage error before any job ran must not stay in the records
    as a build that is still running (Project._run starts the execution record before it
    makes the executor, outside the try that finishes the record)."""
    project = copy_example(tmp_path / "compile")
    rlmake(project, "build", "--executor", "dask", "--scheduler", cluster.address,
           "--dask-files", "staged", expect=2)
    listed = json.loads(rlmake(project, "log", "--json").stdout)
    assert [e for e in listed if e["status"] == "running"] == [], listed


def test_the_cluster_listens_on_127_0_0_1_only(cluster):
    psutil = pytest.importorskip("psutil")
    processes = []
    for top in (cluster.scheduler, *cluster.workers):
        parent = psutil.Process(top.pid)
        processes += [parent, *parent.children(recursive=True)]
    listening = [(p.pid, c.laddr) for p in processes for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening, "no listening sockets found"
    assert all(address.ip == "127.0.0.1" for _, address in listening), listening


# --- part of the cluster dies mid-build ---------------------------------------------------------

SLOW_JOBS = 20


def write_slow(root: Path) -> None:
    """SLOW_JOBS jobs that each sleep 0.3 s; each logs start and end with its worker's pid."""
    lines = ["default: all", "rules:"]
    for i in range(SLOW_JOBS):
        (root / "src").mkdir(parents=True, exist_ok=True)
        (root / f"src/f{i}.txt").write_text(f"slow source {i}\n" * (i + 1))
        command = (f"echo start {i} $PPID >> trace.log; sleep 0.3; "
                   f"cp src/f{i}.txt out/f{i}.txt; echo end {i} $PPID >> trace.log")
        lines.extend([f"  out/f{i}.txt:", f"    deps: [src/f{i}.txt]",
                      f"    command: {_q(command)}"])
    lines.extend(["  all:", "    deps:"] + [f"      - out/f{i}.txt" for i in range(SLOW_JOBS)])
    (root / "Rulesfile.yaml").write_text("\n".join(lines) + "\n")


def slow_outputs_correct(root: Path) -> bool:
    return all((root / f"out/f{i}.txt").is_file()
               and (root / f"out/f{i}.txt").read_bytes() == (root / f"src/f{i}.txt").read_bytes()
               for i in range(SLOW_JOBS))


def in_flight(root: Path, pids: set[int]) -> set[int]:
    """Jobs that started in one of these processes and have not ended."""
    running: set[tuple[int, int]] = set()
    with contextlib.suppress(FileNotFoundError):
        for line in (root / "trace.log").read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue                    # a line being written
            kind, job, pid = parts[0], int(parts[1]), int(parts[2])
            (running.add if kind == "start" else running.discard)((job, pid))
    return {job for job, pid in running if pid in pids}


def commands_running_in(root: Path) -> list[int]:
    """Live processes whose working directory is the project: the jobs' commands."""
    import psutil

    found = []
    for process in psutil.process_iter(["cwd", "status"]):
        if process.info["cwd"] == str(root) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process.pid)
    return found


def wait_for_commands_to_stop(root: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while commands_running_in(root):
        assert time.monotonic() < deadline, f"commands still running: {commands_running_in(root)}"
        time.sleep(0.05)


def started_twice(root: Path) -> list[int]:
    starts: dict[int, int] = {}
    for line in (root / "trace.log").read_text().splitlines():
        kind, job, _pid = line.split()
        if kind == "start":
            starts[int(job)] = starts.get(int(job), 0) + 1
    return sorted(job for job, count in starts.items() if count > 1)


def test_worker_killed_mid_build(fresh_cluster, tmp_path, record_property):
    project = tmp_path / "proj"
    write_slow(project)
    build = start_rlmake(project, "build", "-j2", "--executor", "dask",
                         "--scheduler", fresh_cluster.address)
    deadline = time.monotonic() + 30        # wait for jobs to run (the client connects first)
    while not (project / "trace.log").exists():
        assert time.monotonic() < deadline and build.poll() is None, \
            finish(build, timeout=90).describe()
        time.sleep(0.02)
    time.sleep(1.0)
    # then kill worker 0 while one of its jobs is sleeping, so that a job is surely lost
    victim = fresh_cluster.process_ids(fresh_cluster.workers[0])
    deadline = time.monotonic() + 10
    while not in_flight(project, victim):
        assert time.monotonic() < deadline and build.poll() is None, \
            "worker 0 ran no job while the build was running"
        time.sleep(0.01)
    lost = in_flight(project, victim)
    fresh_cluster.kill(fresh_cluster.workers[0])           # nanny and worker process: SIGKILL
    result = finish(build, timeout=90)

    if result.returncode == 0:
        outcome = "succeeded: Dask reran the lost job on the other worker"
        assert slow_outputs_correct(project), result.describe()
        record = last_execution(project)
        assert (record["status"], record["ran"], record["failed"]) == \
            ("succeeded", SLOW_JOBS, 0), result.describe()
        # the rerun waited for the dead worker's copy to be killed: none is left running
        assert commands_running_in(project) == [], "a command outlived its dead worker"
        assert rlmake(project, "build", "-v", "--executor", "local").ran == set()
        assert set(started_twice(project)) >= lost, "the lost job was not run again"
    else:
        outcome = "failed clearly, naming the Dask cluster"
        assert result.returncode == 1, result.describe()
        assert "Dask cluster" in result.stdout + result.stderr, result.describe()
        wait_for_commands_to_stop(project)
        rlmake(project, "build", "-j2", "--executor", "local")
        assert slow_outputs_correct(project)
    rerun = started_twice(project)
    record_property("worker_killed_outcome", outcome)
    record_property("jobs_started_twice", rerun)
    print(f"\nworker killed mid-build: {outcome}; in flight on it: {sorted(lost)}; "
          f"jobs started twice: {rerun}; "
          f"build took {result.elapsed:.1f}s")


def test_scheduler_killed_mid_build(fresh_cluster, tmp_path):
    """The build stops at once with status 3 (the executor failed, not a command), says
    so in one line and without distributed's tracebacks, records none of the jobs that
    were running, and its report files call them lost (JUnit: an <error>)."""
    import xml.etree.ElementTree as ET

    project = tmp_path / "proj"
    write_slow(project)
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    build = start_rlmake(project, "build", "-j2", "--executor", "dask",
                         "--scheduler", fresh_cluster.address,
                         "--report", report, "--junit", junit)
    deadline = time.monotonic() + 30
    while not (project / "trace.log").exists():
        assert time.monotonic() < deadline and build.poll() is None, \
            finish(build, timeout=90).describe()
        time.sleep(0.02)
    time.sleep(1.0)
    assert build.poll() is None, "the build finished before the scheduler could be killed"
    fresh_cluster.kill(fresh_cluster.scheduler)
    result = finish(build, timeout=60)
    print(f"\nscheduler killed mid-build: exit {result.returncode} after {result.elapsed:.1f}s")

    assert result.returncode == 3, result.describe()
    said = f"rlmake: error: the Dask scheduler at {fresh_cluster.address} went away: "
    assert result.stderr.count(said) == 1, result.describe()
    assert "FAILED: " not in result.stderr, result.describe()
    assert "Traceback" not in result.stderr and "distributed." not in result.stderr, \
        result.describe()

    data = json.loads(report.read_text())
    statuses = {job["target"]: job["status"] for job in data["jobs"]}
    lost = {target for target, status in statuses.items() if status == "lost"}
    assert data["status"] == "executor failed", data
    assert lost and "failed" not in statuses.values(), statuses
    assert set(statuses.values()) <= {"done", "lost", "skipped"}, statuses
    assert all(said.removeprefix("rlmake: error: ") in job["error"]
               for job in data["jobs"] if job["status"] == "lost")
    suite = ET.parse(junit).getroot()
    errored = {case.get("name") for case in suite.iter("testcase")
               if case.find("error") is not None}
    assert errored == lost and suite.get("errors") == str(len(lost)), ET.tostring(suite)
    assert suite.get("failures") == "0"

    record = last_execution(project)
    assert record["status"] == "failed" and record["failed"] == 0, record
    recorded = {run["target"] for run in record["runs"]}
    assert recorded == {t for t, status in statuses.items() if status == "done"}, record
    assert record["ran"] < SLOW_JOBS, record

    fresh_cluster.stop()                    # no worker may write into the project any more
    wait_for_commands_to_stop(project)      # nor a command of one (killed when it died)
    local = rlmake(project, "build", "-v", "-j2", "--executor", "local")
    assert lost <= local.ran, local.describe()
    assert slow_outputs_correct(project), local.describe()
    assert rlmake(project, "build", "-v", "--executor", "local").ran == set()
