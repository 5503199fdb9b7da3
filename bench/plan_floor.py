#!/usr/bin/env python3
"""What the least per-job work of a fresh `build -n` costs in this CPython.

    python bench/plan_floor.py [--dir PROJECT] [--jobs N]

Times, in CPU microseconds, the pieces that any planner written in Python must do
once per compile job of the archives project (bench/generate.py --style archives),
whatever its design: make the job's record (a 15-field NamedTuple), enter each path
in a dict (who makes it; who reads it), fill in its command, look at its source
(one stat), decide it would run (an outcome record) and write its line. Their sum
is a floor for the Python part of a fresh plan, to compare with what it costs now
(bench/plan_phases.py) and with `make -n`'s whole run per job.

With --dir, the stat is of the project's real sources (the kernel's cost of a path
lookup in this file system; the project must have at least N jobs, default 100,000);
without it, of one file again and again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # this checkout's rlmake

from rlmake.model import Decision, Job, Location, Outcome, Reason, ReasonKind, Status  # noqa: E402

def per_item(action, items) -> float:
    """CPU microseconds per item of `action(items)`, the least of three runs."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        action(items)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="a generated archives project: stat its sources")
    parser.add_argument("--jobs", type=int, default=100_000, help="items per timing")
    args = parser.parse_args(argv)
    stems = [f"g{n // 100}/f{n % 100}" for n in range(args.jobs)]
    where = Location("Rulesfile.yaml", 3)
    vars_read: tuple = ()

    def jobs(items):
        for stem in items:
            Job(f"obj/{stem}.o", "obj/%.o", where, (f"obj/{stem}.o",), (f"src/{stem}.c",),
                (f"cp src/{stem}.c obj/{stem}.o",), (), None, None, None, False, False,
                vars_read, ())

    def dict_entries(items):
        table: dict[str, int] = {}
        for n, stem in enumerate(items):
            table[stem] = n

    def commands(items):
        for stem in items:
            "".join(("cp ", f"src/{stem}.c", " ", f"obj/{stem}.o"))

    if args.dir:
        sources = [os.path.join(args.dir, "src", f"{stem}.c") for stem in stems]
    else:
        sources = [__file__] * args.jobs

    def stats(items):
        for path in items:
            os.stat(path)

    decision = Decision("", (Reason(ReasonKind.NEVER_BUILT),))
    job = Job("t", "r", where, (), (), ("c",))

    def outcomes(items):
        for _ in items:
            Outcome(job, Status.WOULD_RUN, decision, started=0.0, ended=0.0)

    def lines(items):
        with open(os.devnull, "w") as out:
            for stem in items:
                out.write(f"cp src/{stem}.c obj/{stem}.o\n")

    parts = [("a Job (15-field NamedTuple)", jobs, stems),
             ("a dict entry (one path)", dict_entries, stems),
             ("the command filled in", commands, stems),
             ("a stat of the source", stats, sources),
             ("an Outcome", outcomes, stems),
             ("the line written (buffered)", lines, stems)]
    total = 0.0
    for label, action, items in parts:
        cost = per_item(action, items)
        total += cost
        print(f"{label:32s} {cost:6.2f} us")
    print(f"{'one of each':32s} {total:6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
