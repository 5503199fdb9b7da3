#!/usr/bin/env python3
"""The per-job overhead of rlmake's Dask executor against the local one.

    python bench/dask_overhead.py [--jobs 200] [--repeat 3] [-j 2] [--scheduler ADDR]

Generates a `cp` project (bench/generate.py, N jobs) and times a full build from
scratch, each run in a fresh copy:

    rlmake build -j2 --executor local
    rlmake build -j2 --executor dask --scheduler ADDR      (files shared: same machine)

against a cluster it starts on 127.0.0.1 (one `dask scheduler`, two `dask worker`
processes with one thread each, dashboards off, the Python of the rlmake script)
unless --scheduler names one. Runs alternate local/dask; the figures are medians.

    per job = (dask - local) / N

That figure includes the fixed cost of a Dask build (connecting, the shared-filesystem
probe, closing). To separate the two, the same is measured on a 1-job project:

    fixed    = dask(1) - local(1)
    marginal = ((dask(N) - local(N)) - fixed) / (N - 1)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402  (bench/generate.py)
from run import check_built, find_rlmake, fresh_copy, tool_env  # noqa: E402  (bench/run.py)


def script_python(rlmake: str) -> str:
    """The interpreter in the rlmake script's shebang: workers must import rlmake."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(rlmake, encoding="utf-8") as stream:
            first = stream.readline().strip()
        if first.startswith("#!") and "python" in os.path.basename(first[2:].split()[0]):
            return first[2:].split()[0]
    return sys.executable


class Cluster:
    """`dask scheduler` and `dask worker`s on 127.0.0.1, each in its own process group."""

    def __init__(self, root: Path, python: str, workers: int):
        self.root, self.python, self.count = root, python, workers
        self.processes: list[subprocess.Popen] = []
        self.address = ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "w") as log:
            process = subprocess.Popen([self.python, "-m", "dask", *args], cwd=self.root,
                                       stdout=log, stderr=subprocess.STDOUT, env=tool_env(),
                                       start_new_session=True)
        self.processes.append(process)
        return process

    def __enter__(self) -> "Cluster":
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        info = self.root / "scheduler.json"
        scheduler = self._spawn("scheduler", [
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--dashboard-address", "127.0.0.1:0", "--idle-timeout", "600",
            "--scheduler-file", str(info)])
        deadline = time.monotonic() + 30
        while not self.address:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.address = json.loads(info.read_text())["address"]
            if not self.address:
                if scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Dask scheduler did not start; see "
                                       f"{self.root / 'scheduler.log'}")
                time.sleep(0.05)
        for n in range(self.count):
            self._spawn(f"worker{n}", [
                "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                "--name", f"bench-w{n}", "--local-directory", str(self.root / f"w{n}")])
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(self.count, timeout=60)

    def __exit__(self, *exc) -> None:
        for signum, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for process in self.processes:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signum)
            deadline = time.monotonic() + grace
            for process in self.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))


def timed_build(rlmake: str, project: Path, args: list[str], timeout: float) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([rlmake, "build", *args], cwd=project, env=tool_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"rlmake build {' '.join(args)} exited {done.returncode}:\n"
                           f"{done.stderr[-2000:]}")
    return elapsed, done.stderr


def measure(rlmake: str, pristine: Path, work: Path, jobs: int, args, repeat: int,
            log) -> dict[str, list[float]]:
    pairs = generate.job_paths(jobs)
    samples: dict[str, list[float]] = {"local": [], "dask": []}
    for run in range(repeat):
        for kind in ("local", "dask"):
            copy = work / f"{kind}-{jobs}-{run}"
            fresh_copy(pristine, copy)
            seconds, stderr = timed_build(rlmake, copy, [*args.common, *args.flags[kind]],
                                          args.timeout)
            if kind == "dask" and "files on a shared filesystem" not in stderr:
                raise RuntimeError(f"the Dask build did not use shared files:\n{stderr}")
            problem = check_built(copy, pairs)
            if problem:
                raise RuntimeError(f"{kind}, {jobs} jobs: {problem}")
            samples[kind].append(seconds)
            log(f"  {jobs:>4} jobs  {kind:<5} run {run + 1}: {seconds:.3f} s")
            if not args.keep:
                shutil.rmtree(copy, ignore_errors=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the project (200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each build (3)")
    parser.add_argument("-j", type=int, default=2, help="the -j of every build (2)")
    parser.add_argument("--workers", type=int, default=2, help="workers to start (2)")
    parser.add_argument("--scheduler", help="use this running scheduler instead of starting one")
    parser.add_argument("--rlmake", help="the rlmake executable (default: past a pyenv shim)")
    parser.add_argument("--workdir", help="work here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the projects")
    parser.add_argument("--json", metavar="FILE", help="also write the samples as JSON")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if args.jobs < 2:
        parser.error("--jobs must be at least 2")

    rlmake = find_rlmake(args.rlmake)
    if not rlmake:
        print("error: no rlmake executable found", file=sys.stderr)
        return 2

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = Path(args.workdir).resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dask-bench-")))
        if args.scheduler:
            address = args.scheduler
        else:
            (work / "cluster").mkdir(exist_ok=True)
            log(f"starting a Dask cluster: 1 scheduler, {args.workers} workers x 1 thread")
            cluster = stack.enter_context(Cluster(work / "cluster", script_python(rlmake),
                                                  args.workers))
            address = cluster.address
        args.common = [f"-j{args.j}"]
        args.flags = {"local": ["--executor", "local"],
                      "dask": ["--executor", "dask", "--scheduler", address]}
        big = generate.generate(work / "pristine-n", args.jobs)
        one = generate.generate(work / "pristine-1", 1)
        log(f"rlmake: {rlmake}\nscheduler: {address}")
        n_samples = measure(rlmake, big, work, args.jobs, args, args.repeat, log)
        one_samples = measure(rlmake, one, work, 1, args, args.repeat, log)

    med = {(jobs, kind): statistics.median(samples[kind])
           for jobs, samples in ((args.jobs, n_samples), (1, one_samples))
           for kind in ("local", "dask")}
    n = args.jobs
    per_job = (med[n, "dask"] - med[n, "local"]) / n * 1000
    fixed = med[1, "dask"] - med[1, "local"]
    marginal = ((med[n, "dask"] - med[n, "local"]) - fixed) / (n - 1) * 1000
    print(f"full build of {n} cp jobs, -j{args.j}, {args.repeat} runs each, medians "
          f"(Dask: {'given scheduler' if args.scheduler else f'{args.workers} local workers'}"
          ", shared files)")
    print(f"{'project':<12} {'local':>9} {'dask':>9} {'dask-local':>11}")
    for jobs in (n, 1):
        print(f"{f'{jobs} job(s)':<12} {med[jobs, 'local']:>8.3f}s {med[jobs, 'dask']:>8.3f}s "
              f"{med[jobs, 'dask'] - med[jobs, 'local']:>+10.3f}s")
    print(f"per-job overhead, (dask - local) / {n}:          {per_job:7.2f} ms/job")
    print(f"fixed cost of a Dask build (1-job project):      {fixed * 1000:7.0f} ms")
    print(f"marginal per-job overhead, fixed cost removed:   {marginal:7.2f} ms/job")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "jobs": n, "j": args.j, "repeat": args.repeat, "scheduler": args.scheduler,
            "samples": {str(n): n_samples, "1": one_samples},
            "per_job_ms": per_job, "fixed_ms": fixed * 1000, "marginal_ms": marginal}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
