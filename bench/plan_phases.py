#!/usr/bin/env python3
"""Where a fresh `rlmake build -n` spends its CPU, part by part, without a profiler.

    python bench/plan_phases.py PROJECT [--rlmake SRC]

PROJECT: a generated project (bench/generate.py); its .rlmake/ is removed first.
SRC: the directory holding the `rlmake` package to time (default: this checkout).

Runs the parts of `Project.build` for a dry run one after the other, in-process, with
the cycle collector off as `build -n` has it while it plans and surveys, and prints
each part's CPU seconds (user + system of this process), per job and as a share.
cProfile spreads its own cost over every call and so overstates the parts made of
many small calls; these figures are the ones to compare with `make -n`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project")
    parser.add_argument("--rlmake", default=str(Path(__file__).resolve().parent.parent),
                        help="directory holding the rlmake package (default: this checkout)")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.rlmake)
    os.environ["CI"] = "1"
    start = time.process_time()
    import rlmake.cli  # noqa: F401  (what the command imports before it plans)
    from rlmake.clock import SystemClock
    from rlmake.model import BuildOptions, JobList, Plan, PlanIndex
    from rlmake.project import Project
    from rlmake.reporters.console import ConsoleReporter
    from rlmake.rules.expand import _Resolver

    times: dict[str, float] = {"imports": time.process_time() - start}
    shutil.rmtree(os.path.join(args.project, ".rlmake"), ignore_errors=True)
    gc.disable()

    def tick(name: str, since: float) -> float:
        now = time.process_time()
        times[name] = now - since
        return now

    now = time.process_time()
    project = Project(args.project)
    rulesfile = project.rulesfile
    now = tick("YAML", now)
    expander = project.expander
    requested = expander.default_targets()
    now = tick("index of rules", now)
    resolver = _Resolver(expander)
    for target in requested:
        resolver.resolve(target)
    now = tick("resolve: match, render, Job", now)
    jobs = JobList(resolver.order)
    index = PlanIndex.of(jobs)
    now = tick("PlanIndex", now)
    plan = Plan(tuple(requested), jobs, resolver.producers, tuple(resolver.sources), index,
                dict(rulesfile.pools), None)
    project._files_seen = getattr(expander, "regular_files", ())  # (older code: none)
    options = BuildOptions(dry_run=True)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        reporter = ConsoleReporter(dry_run=True)
        outcomes = project._survey(plan, options, reporter, "content", SystemClock())
        reporter.build_finished(outcomes, 0.0)
    tick("survey: decide, report", now)
    count = len(jobs)
    total = sum(times.values())
    print(f"{count} jobs ({args.project}), rlmake from {args.rlmake}")
    for name, seconds in times.items():
        print(f"{name:30s} {seconds:7.3f} s  {seconds / count * 1e6:6.1f} us/job  "
              f"{100 * seconds / total:4.1f} %")
    print(f"{'total':30s} {total:7.3f} s  {total / count * 1e6:6.1f} us/job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
