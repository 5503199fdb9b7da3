#!/usr/bin/env python3
"""Staged files over S3 against a shared filesystem, on the same Dask cluster.

    python bench/dask_staged.py [--repeat 3] [-j 2] [--workers 2]

Starts moto_server (a real S3 service on 127.0.0.1, tests/s3server.py) and a Dask
cluster on 127.0.0.1 (tests/test_dask_executor.py's, the checkout's rlmake on every
worker), writes the generated 200-job project of those tests (cp jobs, and cat jobs
over them), then times full builds from scratch, each in a fresh copy:

    rlmake build -jJ --executor dask --scheduler ADDR                    (shared)
    rlmake build -jJ --executor dask --scheduler ADDR --dask-files shared
                 --cache s3://BUCKET/RUN --cache-write --no-local-cache  (shared+cache)
    rlmake build -jJ --executor dask --scheduler ADDR --dask-files staged
                 --cache s3://BUCKET/RUN --cache-write --no-local-cache  (staged)

Staging needs the shared store with write access, so a staged build also looks every
job up there and stores its results: `shared+cache` measures that part alone. Each
run uses a prefix of its own, so that nothing is already in the store. Prints the
median of each and the ratios to shared; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from checkout import RLMAKE  # noqa: E402  (puts the checkout first on PYTHONPATH)
from s3server import CREDENTIALS, MotoServer  # noqa: E402
from test_dask_executor import running_cluster, tree, write_generated  # noqa: E402

BUCKET = "bench-staged"


def timed_build(project: Path, args: list[str], env: dict[str, str], timeout: float) -> float:
    started = time.perf_counter()
    done = subprocess.run([*RLMAKE, "build", *args], cwd=project, env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"rlmake build {' '.join(args)} exited {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each build (3)")
    parser.add_argument("-j", type=int, default=2, help="the -j of every build (2)")
    parser.add_argument("--workers", type=int, default=2, help="workers to start (2)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # the workers inherit these: they fetch and upload staged files themselves
    os.environ.update(CREDENTIALS)
    env = {name: value for name, value in os.environ.items() if not name.startswith("RLMAKE_")}
    env["CI"] = "1"
    modes = ("shared", "shared+cache", "staged")
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dask-staged-")))
        moto = MotoServer().start()
        stack.callback(moto.stop)
        moto.client().create_bucket(Bucket=BUCKET)
        env["RLMAKE_CACHE_ENDPOINT"] = moto.endpoint
        log(f"moto_server at {moto.endpoint}; starting {args.workers} Dask workers")
        cluster = stack.enter_context(running_cluster(work / "cluster", args.workers))
        pristine = work / "pristine"
        jobs = write_generated(pristine)
        reference = None
        for run in range(args.repeat):
            for mode in modes:
                project = work / f"{mode}-{run}"
                subprocess.run(["cp", "-a", str(pristine), str(project)], check=True)
                flags = [f"-j{args.j}", "--executor", "dask", "--scheduler", cluster.address]
                if mode != "shared":
                    flags += ["--dask-files", mode.split("+")[0], "--cache",
                              f"s3://{BUCKET}/{mode}-{run}", "--cache-write",
                              "--no-local-cache"]
                seconds = timed_build(project, flags, env, args.timeout)
                built = tree(project, ("out", "cat"))
                if len(built) != jobs or (reference is not None and built != reference):
                    raise RuntimeError(f"{mode} run {run + 1} did not build the project right")
                reference = built
                samples[mode].append(seconds)
                log(f"  {mode:<12} run {run + 1}: {seconds:.2f} s")

    median = {mode: statistics.median(samples[mode]) for mode in modes}
    print(f"{jobs} jobs, -j{args.j}, {args.workers} workers, medians of {args.repeat} runs")
    print(f"shared filesystem:                {median['shared']:7.2f} s")
    print(f"shared, S3 cache written:         {median['shared+cache']:7.2f} s")
    print(f"staged through S3 (cache written): {median['staged']:6.2f} s")
    print(f"staged / shared:                  {median['staged'] / median['shared']:7.2f}x")
    print(f"staged / shared with the cache:   "
          f"{median['staged'] / median['shared+cache']:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
