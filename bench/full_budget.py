#!/usr/bin/env python3
"""How much of its own CPU a build tool may spend per job and stay within 1.3 x make.

    python bench/full_budget.py [--jobs 2000] [--rounds 3] [--extra 0,0.1,0.2,0.3,0.5,0.8,floor]

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
    loop + real work         the same loop doing, instead of spinning, the least
                             real bookkeeping that rlmake's promises need (class
                             Floor: hashes, a log of running commands, the inputs
                             stat'd again, a run row, the local store, a progress
                             line), written flat, with none of rlmake's layers

and prints, per E, the loop's own CPU per job (getrusage of this process) and its
wall time against make's (and each build against the make build just before it, as
it goes). Where the ratio crosses 1.3 is the budget: a tool in
CPython spending more of its own CPU per job than that cannot meet the target on
this machine, however it arranges its work on one thread. Compare with rlmake's
figure in `bench/run.py --only owncpu` and with `bench/spawn_floor.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import select
import signal
import sqlite3
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import DEFAULT_GROUP as GROUP, archive_groups, archive_pairs, generate  # noqa: E402

TARGET = 1.3
FLOOR = "floor"


def own_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


class Job(NamedTuple):
    argv: list[str]
    group: int                  # the compile's archive group; -1 for an archive
    inputs: tuple[str, ...]
    output: str


def commands(jobs: int) -> tuple[list[Job], list[Job]]:
    """The compiles (cp exec'd directly, as make and rlmake do) and each group's archive
    (through the shell, for its redirection)."""
    cp = shutil.which("cp") or "/bin/cp"
    compiles = [Job([cp, source, target], n // GROUP, (source,), target)
                for n, (source, target) in enumerate(archive_pairs(jobs, GROUP))]
    archives = [Job(["/bin/sh", "-c", f"cat {' '.join(objects)} > {archive}"], -1,
                    tuple(objects), archive)
                for archive, objects in archive_groups(jobs, GROUP)]
    return compiles, archives


ENVIRONMENT = dict(os.environ)     # a plain dict, as rlmake passes: os.environ costs more


def spawn(argv: list[str]) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, ENVIRONMENT, setsid=True,
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


class Spun:
    """Bookkeeping stood for by a chosen amount of CPU spun after each job."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def decide(self, job: Job) -> str:
        return ""

    def started(self, pid: int) -> None:
        pass

    def settle(self, job: Job, key: str, pid: int) -> None:
        spin(self.seconds)

    def close(self) -> None:
        pass


def _digest(path: str) -> tuple[str, bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    return hashlib.blake2b(data, digest_size=20).hexdigest(), data


class Floor:
    """The least real bookkeeping a tool that promises what rlmake does must do per job,
    written as one tight function each way, without layers: hash what the job reads
    and make its key before it starts; list the started command in a log (what finds
    it if the tool is killed); after it ends, stat and hash its output, stat its inputs
    again (an input edited while the job ran voids it), record the run in SQLite
    (committed every half second), put the output in a local store (a blob file and two
    rows), strike the command from the log and write a progress line. Sources are
    hashed once."""

    def __init__(self, directory: Path):
        state = directory / ".floor"
        state.mkdir()
        self.db = sqlite3.connect(state / "state.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            "CREATE TABLE runs(target TEXT, key TEXT, output TEXT, inputs TEXT);"
            "CREATE TABLE blobs(digest TEXT PRIMARY KEY, data BLOB);"
            "CREATE TABLE actions(key TEXT PRIMARY KEY, outputs TEXT);")
        self.db.execute("BEGIN")
        self.committed = time.monotonic()
        self.digests: dict[str, str] = {}
        self.stats: dict[str, tuple[int, int]] = {}     # path -> (mtime, ctime) when hashed
        self.out = os.open(os.devnull, os.O_WRONLY)
        self.log = os.open(state / "running", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.done = 0

    def decide(self, job: Job) -> str:
        key = hashlib.blake2b(" ".join(job.argv).encode(), digest_size=20)
        for path in job.inputs:
            digest = self.digests.get(path)
            if digest is None:
                found = os.stat(path)
                self.stats[path] = (found.st_mtime_ns, found.st_ctime_ns)
                digest = self.digests[path] = _digest(path)[0]
            key.update(digest.encode())
        try:
            os.stat(job.output)
        except FileNotFoundError:
            pass
        return key.hexdigest()

    def started(self, pid: int) -> None:
        os.write(self.log, f"+{pid}\n".encode())

    def settle(self, job: Job, key: str, pid: int) -> None:
        found = os.stat(job.output)
        digest, data = _digest(job.output)
        self.digests[job.output] = digest
        self.stats[job.output] = (found.st_mtime_ns, found.st_ctime_ns)
        for path in job.inputs:
            now = os.stat(path)
            if (now.st_mtime_ns, now.st_ctime_ns) != self.stats[path]:
                raise RuntimeError(f"{path} changed while {job.output} was made")
        outputs = json.dumps({job.output: digest})
        self.db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                        (job.output, key, digest, json.dumps(job.inputs)))
        self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (digest, data))
        self.db.execute("INSERT OR REPLACE INTO actions VALUES (?, ?)", (key, outputs))
        os.write(self.log, f"-{pid}\n".encode())
        self.done += 1
        os.write(self.out, f"[{self.done}] {job.output}\n".encode())
        if time.monotonic() - self.committed > 0.5:
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")
            self.committed = time.monotonic()

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()
        os.close(self.out)
        os.close(self.log)


class LoopBuild:
    """The minimal build: at most two commands at once, an archive once its objects are
    made; after each job ends, the next one starts, then the ended one's bookkeeping."""

    def __init__(self, jobs: int, bookkeeping: "Spun | Floor"):
        self.compiles, self.archives = commands(jobs)
        self.compiles.reverse()                 # popped from the end: in order
        self.ready: list[Job] = []              # archives released
        self.left = [0] * len(self.archives)    # compiles not yet done, per group
        for job in self.compiles:
            self.left[job.group] += 1
        self.bookkeeping = bookkeeping
        self.poll = select.poll()
        self.running: dict[int, tuple[int, Job, str]] = {}   # pipe -> (pid, job, key)

    def run(self) -> None:
        self.fill()
        while self.running:
            for fd, _ in self.poll.poll():
                if not os.read(fd, 65536):
                    pid, job, key = self.finish(fd)
                    self.fill()
                    self.bookkeeping.settle(job, key, pid)
        self.bookkeeping.close()

    def fill(self) -> None:
        while len(self.running) < 2 and (self.ready or self.compiles):
            job = self.ready.pop() if self.ready else self.compiles.pop()
            key = self.bookkeeping.decide(job)
            fd, pid = spawn(job.argv)
            self.bookkeeping.started(pid)
            self.running[fd] = (pid, job, key)
            self.poll.register(fd, select.POLLIN)

    def finish(self, fd: int) -> tuple[int, Job, str]:
        self.poll.unregister(fd)
        os.close(fd)
        pid, job, key = self.running.pop(fd)
        if os.waitpid(pid, 0)[1]:
            raise RuntimeError("a command failed")
        if job.group >= 0:
            self.left[job.group] -= 1
            if self.left[job.group] == 0:
                self.ready.append(self.archives[job.group])
        return pid, job, key


def loop_build(directory: Path, jobs: int, extra: float | str) -> tuple[float, float]:
    """(wall seconds, own CPU seconds) of the minimal build in `directory`; `extra` is the
    CPU spun per job, or "floor" for the least real bookkeeping (class Floor)."""
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        cpu, started = own_cpu(), time.perf_counter()
        build = LoopBuild(jobs, Floor(directory) if extra == FLOOR else Spun(float(extra)))
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


def rlmake_build(directory: Path, rlmake: str) -> float:
    """rlmake's full build of the same project, with its defaults (local store included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLMAKE_")}
    env["CI"] = "1"
    started = time.perf_counter()
    subprocess.run([rlmake, "build", "-j2"], cwd=directory, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh(source: Path, work: Path) -> Path:
    copy = work / "copy"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(source, copy, symlinks=True)
    return copy


def _label(extra: float | str) -> str:
    return "real work" if extra == FLOOR else f"{float(extra) * 1e3:.2f} ms"


def say_pair(round_: int, label: str, wall: float, make: float) -> None:
    """One build against the make build just before it: the pairs show the spread that
    the medians hide."""
    print(f"round {round_}: {label:>12} {wall:7.3f} s against make's {make:7.3f} s: "
          f"{wall / make:.2f} x", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rlmake", metavar="EXE",
                        help="also time `EXE build -j2` in each round, for comparison")
    parser.add_argument("--extra", default="0,0.1,0.2,0.3,0.5,0.8,floor",
                        help="milliseconds of CPU spun after each job, comma-separated; "
                        "'floor' for the least real bookkeeping instead")
    args = parser.parse_args()
    extras = [x if x == FLOOR else float(x) / 1000 for x in args.extra.split(",")]
    total = args.jobs + len(archive_groups(args.jobs))
    with tempfile.TemporaryDirectory(prefix="full-budget-") as name:
        work = Path(name)
        project = generate(work / "project", args.jobs, style="archives")
        make_walls: list[float] = []
        rlmake_walls: list[float] = []
        loops: dict[float | str, list[tuple[float, float]]] = {e: [] for e in extras}
        for round_ in range(1, args.rounds + 1):
            for extra in extras:
                make_walls.append(make_build(fresh(project, work)))
                loops[extra].append(loop_build(fresh(project, work), args.jobs, extra))
                say_pair(round_, _label(extra), loops[extra][-1][0], make_walls[-1])
            if args.rlmake:
                rlmake_walls.append(rlmake_build(fresh(project, work), args.rlmake))
                say_pair(round_, "rlmake build", rlmake_walls[-1], make_walls[-1])
        make = statistics.median(make_walls)
    print(f"{total} jobs at -j2, {os.cpu_count()} CPUs, {args.rounds} rounds; "
          f"make -j2: {make:.3f} s (median of {len(make_walls)}), {make / total * 1e3:.3f} ms a job")
    print(f"{'spun per job':>14}  {'own CPU per job':>15}  {'wall':>8}  {'x make':>6}")
    points = []
    for extra in extras:
        wall = statistics.median(w for w, _ in loops[extra])
        cpu = statistics.median(c for _, c in loops[extra]) / total
        print(f"{_label(extra):>14}  {cpu * 1e3:>12.3f} ms  {wall:>6.3f} s  {wall / make:>6.2f}")
        if extra != FLOOR:
            points.append((cpu, wall / make))
    if rlmake_walls:
        wall = statistics.median(rlmake_walls)
        print(f"{'rlmake build':>14}  {'':>15}  {wall:>6.3f} s  {wall / make:>6.2f}")
    below = [p for p in points if p[1] <= TARGET]
    above = [p for p in points if p[1] > TARGET]
    if below and above:
        (c0, r0), (c1, r1) = max(below), min(above)
        budget = c0 + (TARGET - r0) * (c1 - c0) / (r1 - r0) if r1 != r0 else c0
        print(f"budget: about {budget * 1e3:.2f} ms of own CPU per job for {TARGET} x make "
              "(interpolated between the two nearest rows)")
    elif below:
        print(f"every spun row is within {TARGET} x make: the budget is above the largest spin")
    else:
        print(f"no spun row is within {TARGET} x make: not even the bare loop meets it here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
