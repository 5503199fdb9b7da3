#!/usr/bin/env python3
"""The least CPU a Python build tool can spend on one job: starting a child and reaping it.

    python bench/spawn_floor.py [--jobs 2000] [--batches 5]

Every job of a full build is at least one child process that the tool starts and
waits for. This measures what that alone costs the parent process in this
interpreter (user + system CPU from getrusage, the children's own CPU excluded),
with nothing else done per job, in the cheapest ways the standard library has:

    posix_spawn bare        os.posix_spawn of /bin/true, os.waitpid
    posix_spawn as rlmake   the same with what rlmake adds to every child: its own
                            session, default signal handlers, stdin from /dev/null,
                            stdout and stderr into a pipe (read until it closes)
    subprocess.Popen        Popen(["/bin/true"]).wait()

Each figure is the median over --batches batches of --jobs children, in
milliseconds per job. rlmake's target of 0.3 ms of its own CPU per job in a full
build has to hold all of a job's bookkeeping (deciding, hashing the output,
recording, storing) on top of this floor.

It then says whether the spawn lets another thread run while the kernel starts
the child (vfork: the parent sleeps until the child has exec'd). A second thread
spins in pure Python; a call that lets go of the GIL hands it over, and takes a
switch interval (5 ms) to get it back, while one that holds it returns in well
under a millisecond. A 0.3 ms time.sleep, which lets go, is shown for comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import time
from typing import Callable

TRUE = "/bin/true"
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)    # as rlmake's local executor


def own_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def bare() -> None:
    pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    os.waitpid(pid, 0)


def as_rlmake() -> None:
    read_end, write_end = os.pipe()
    pid = os.posix_spawn(TRUE, [TRUE], os.environ, setsid=True, setsigdef=RESET_SIGNALS,
                         setsigmask=(),
                         file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                       (os.POSIX_SPAWN_DUP2, write_end, 1),
                                       (os.POSIX_SPAWN_DUP2, write_end, 2)])
    os.close(write_end)
    while os.read(read_end, 65536):
        pass
    os.close(read_end)
    os.waitpid(pid, 0)


def popen() -> None:
    subprocess.Popen([TRUE]).wait()


def per_job_ms(start: Callable[[], None], jobs: int, batches: int) -> float:
    samples = []
    for _ in range(batches):
        before = own_cpu()
        for _ in range(jobs):
            start()
        samples.append((own_cpu() - before) * 1000 / jobs)
    return statistics.median(samples)


def held_ms(call: Callable[[], object], calls: int = 200) -> float:
    """The median time of `call` while another thread spins in Python."""
    import threading

    spinning = True

    def spin() -> None:
        while spinning:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    samples = []
    try:
        for _ in range(calls):
            started = time.perf_counter()
            result = call()
            samples.append(time.perf_counter() - started)
            if isinstance(result, int):
                os.waitpid(result, 0)
            elif isinstance(result, subprocess.Popen):
                result.wait()
    finally:
        spinning = False
        spinner.join()
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    for name, start in (("posix_spawn bare", bare), ("posix_spawn as rlmake", as_rlmake),
                        ("subprocess.Popen", popen)):
        figure = per_job_ms(start, args.jobs, args.batches)
        print(f"{name:24} {figure:.3f} ms of the parent's CPU per job")
    print("with another thread spinning in Python (about 5 ms: the call let go of the GIL):")
    for name, call in (("os.posix_spawn", lambda: os.posix_spawn(TRUE, [TRUE], os.environ)),
                       ("time.sleep(0.0003)", lambda: time.sleep(0.0003))):
        print(f"{name:24} {held_ms(call):.3f} ms a call")


if __name__ == "__main__":
    main()
