#!/usr/bin/env python3
"""How much of its own CPU a build tool may spend per job and stay within 1.3 x make.

    python bench/full_budget.py [--jobs 2000] [--rounds 3] [--extra 0,0.1,0.2,0.3,0.5,0.8]

A full build of `cp` jobs at -j2 on a 2-CPU machine is a race between the tool's
one thread and the commands for the same two CPUs. This builds the archives
project of bench/generate.py (compiles, then one `cat` per group of 100 objects)
two ways, alternated round by round, each time in a fresh copy:

    make -j2                 GNU make (its own work per job: microseconds)
    loop +E ms               the least a build tool in Python can do: start each
                             command as rlmake does (posix_spawn, its own session,
                             stdin from /dev/null, output into a pipe read to its
                             end), at most two at once, each archive once its objects
                             are done; after each job ends, start the next one, then
                             spin E ms of CPU, standing for the tool's bookkeeping
                             (deciding, hashing, recording, storing, reporting)

and prints, per E, the loop's own CPU per job (getrusage of this process) and its
wall time against make's. Where the ratio crosses 1.3 is the budget: a tool in
CPython spending more of its own CPU per job than that cannot meet the target on
this machine, however it arranges its work on one thread. Compare with rlmake's
figure in `bench/run.py --only owncpu` and with `bench/spawn_floor.py`.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import DEFAULT_GROUP as GROUP, archive_groups, archive_pairs, generate  # noqa: E402

TARGET = 1.3


def own_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def commands(jobs: int) -> tuple[list[tuple[list[str], int]], list[list[str]]]:
    """Each compile's argv (cp exec'd directly, as make and rlmake do) with its group, and
    each group's archive argv (through the shell, for its redirection)."""
    cp = shutil.which("cp") or "/bin/cp"
    compiles = [([cp, source, target], n // GROUP)
                for n, (source, target) in enumerate(archive_pairs(jobs, GROUP))]
    archives = [["/bin/sh", "-c", f"cat {' '.join(objects)} > {archive}"]
                for archive, objects in archive_groups(jobs, GROUP)]
    return compiles, archives


def spawn(argv: list[str]) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ, setsid=True,
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ), setsigmask=(),
                             file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                           (os.POSIX_SPAWN_DUP2, write_end, 1),
                                           (os.POSIX_SPAWN_DUP2, write_end, 2)])
    finally:
        os.close(write_end)
    return read_end, pid


def spin(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


class LoopBuild:
    """The minimal build: at most two commands at once, an archive once its objects are
    made; after each job ends, the next one starts, then the bookkeeping is spun."""

    def __init__(self, jobs: int, extra: float):
        self.compiles, self.archives = commands(jobs)
        self.compiles.reverse()                 # popped from the end: in order
        self.ready: list[tuple[list[str], int]] = []     # archives released
        self.left = [0] * len(self.archives)    # compiles not yet done, per group
        for _, group in self.compiles:
            self.left[group] += 1
        self.extra = extra
        self.poll = select.poll()
        self.running: dict[int, tuple[int, int]] = {}   # pipe -> (pid, group or -1)

    def run(self) -> None:
        self.fill()
        while self.running:
            for fd, _ in self.poll.poll():
                if not os.read(fd, 65536):
                    self.finish(fd)
                    self.fill()
                    spin(self.extra)

    def fill(self) -> None:
        while len(self.running) < 2 and (self.ready or self.compiles):
            argv, group = self.ready.pop() if self.ready else self.compiles.pop()
            fd, pid = spawn(argv)
            self.running[fd] = (pid, group)
            self.poll.register(fd, select.POLLIN)

    def finish(self, fd: int) -> None:
        self.poll.unregister(fd)
        os.close(fd)
        pid, group = self.running.pop(fd)
        if os.waitpid(pid, 0)[1]:
            raise RuntimeError("a command failed")
        if group >= 0:
            self.left[group] -= 1
            if self.left[group] == 0:
                self.ready.append((self.archives[group], -1))


def loop_build(directory: Path, jobs: int, extra: float) -> tuple[float, float]:
    """(wall seconds, own CPU seconds) of the minimal build in `directory`."""
    build = LoopBuild(jobs, extra)
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        cpu, started = own_cpu(), time.perf_counter()
        build.run()
        figures = time.perf_counter() - started, own_cpu() - cpu
    finally:
        os.chdir(cwd)
    missing = [archive for archive, _ in archive_groups(jobs, GROUP)
               if not (directory / archive).is_file()]
    if missing or build.compiles or build.ready:
        raise RuntimeError(f"the loop left work undone in {directory}: {missing[:3]}")
    return figures


def make_build(directory: Path) -> float:
    env = {k: v for k, v in os.environ.items() if "MAKE" not in k}
    started = time.perf_counter()
    subprocess.run(["make", "-j2", "-s"], cwd=directory, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh(source: Path, work: Path) -> Path:
    copy = work / "copy"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(source, copy, symlinks=True)
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra", default="0,0.1,0.2,0.3,0.5,0.8",
                        help="milliseconds of CPU spun after each job, comma-separated")
    args = parser.parse_args()
    extras = [float(x) / 1000 for x in args.extra.split(",")]
    total = args.jobs + len(archive_groups(args.jobs))
    with tempfile.TemporaryDirectory(prefix="full-budget-") as name:
        work = Path(name)
        project = generate(work / "project", args.jobs, style="archives")
        make_walls: list[float] = []
        loops: dict[float, list[tuple[float, float]]] = {e: [] for e in extras}
        for _ in range(args.rounds):
            for extra in extras:
                make_walls.append(make_build(fresh(project, work)))
                loops[extra].append(loop_build(fresh(project, work), args.jobs, extra))
        make = statistics.median(make_walls)
    print(f"{total} jobs at -j2, {os.cpu_count()} CPUs, {args.rounds} rounds; "
          f"make -j2: {make:.3f} s (median of {len(make_walls)}), {make / total * 1e3:.3f} ms a job")
    print(f"{'spun per job':>14}  {'own CPU per job':>15}  {'wall':>8}  {'x make':>6}")
    points = []
    for extra in extras:
        wall = statistics.median(w for w, _ in loops[extra])
        cpu = statistics.median(c for _, c in loops[extra]) / total
        points.append((cpu, wall / make))
        print(f"{extra * 1e3:>11.2f} ms  {cpu * 1e3:>12.3f} ms  {wall:>6.3f} s  {wall / make:>6.2f}")
    below = [p for p in points if p[1] <= TARGET]
    above = [p for p in points if p[1] > TARGET]
    if below and above:
        (c0, r0), (c1, r1) = max(below), min(above)
        budget = c0 + (TARGET - r0) * (c1 - c0) / (r1 - r0) if r1 != r0 else c0
        print(f"budget: about {budget * 1e3:.2f} ms of own CPU per job for {TARGET} x make "
              "(interpolated between the two nearest rows)")
    elif below:
        print(f"every row is within {TARGET} x make: the budget is above the largest spin")
    else:
        print(f"no row is within {TARGET} x make: not even the bare loop meets it here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
