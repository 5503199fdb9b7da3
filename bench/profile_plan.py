#!/usr/bin/env python3
"""Profile `rlmake build -n` on a generated 10,000-rule project, in-process.

    python bench/profile_plan.py [--jobs 10000] [--style explicit|pattern]
                                 [--top 25] [--dir DIR] [--pstats FILE]

Generates the project (bench/generate.py) into a temporary directory under
bench/out/ (or DIR), then runs

    from rlmake.cli import main
    main(['build', '-n', '-C', DIR], standalone_mode=False)

under cProfile with stdout sent to /dev/null, and prints the wall time and the
top functions by cumulative time and by own time (tottime). The rlmake modules
that the CLI imports lazily are imported inside the profiled call, as in a
real run; the interpreter's own start-up and `import rlmake.cli` are not.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))   # this checkout's rlmake, not whichever is installed

import generate  # noqa: E402  (bench/generate.py)


def run_plan(directory: Path, fresh: bool) -> float:
    """One in-process `rlmake build -n -C DIRECTORY`; its wall time.

    FRESH: remove the project's state first (.rlmake/: stored plan, snapshots,
    digests), so that the whole plan is computed from the Rulesfile."""
    from rlmake.cli import main

    if fresh:
        shutil.rmtree(directory / ".rlmake", ignore_errors=True)

    os.environ["CI"] = "1"
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        start = time.perf_counter()
        try:
            main(["build", "-n", "-C", str(directory)], standalone_mode=False)
        except SystemExit as exit_:  # click's ctx.exit on an RlmakeError
            if exit_.code not in (0, None):
                raise
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000,
                        help="cp jobs in the project (default %(default)s)")
    parser.add_argument("--style", choices=["explicit", "pattern", "archives"], default="explicit",
                        help="how the Rulesfile spells the jobs (default %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="rows per listing (default %(default)s)")
    parser.add_argument("--dir", metavar="DIR",
                        help="generate the project here and keep it (default: a temporary "
                             "directory under bench/out/, removed afterwards)")
    parser.add_argument("--pstats", metavar="FILE", help="also save the raw profile to FILE")
    parser.add_argument("--state", choices=["fresh", "warm"], default="fresh",
                        help="fresh: no .rlmake/ state before each run (default); warm: "
                             "one unprofiled run first, so the profiled run reuses the stored "
                             "plan and state, as a repeated `build -n` does")
    args = parser.parse_args(argv)

    if args.dir:
        directory, temporary = Path(args.dir).resolve(), False
    else:
        (HERE / "out").mkdir(exist_ok=True)
        directory, temporary = Path(tempfile.mkdtemp(prefix="profile-", dir=HERE / "out")), True
    try:
        generate.generate(directory, args.jobs, style=args.style)
        import rlmake.cli  # noqa: F401  (import outside the profile, as the entry point does)

        fresh = args.state == "fresh"
        if not fresh:
            run_plan(directory, fresh=True)  # writes the state the profiled run reuses
        profile = cProfile.Profile()
        profile.enable()
        profiled = run_plan(directory, fresh)
        profile.disable()
        # Once more without the profiler, same state (lazy imports now done).
        plain = run_plan(directory, fresh)

        print(f"rlmake build -n, {args.jobs} {args.style} rules, {args.state} state, "
              f"in {directory}")
        print(f"wall time under cProfile: {profiled:.3f} s; without the profiler "
              f"(a second run, imports already done): {plain:.3f} s")
        if args.pstats:
            profile.dump_stats(args.pstats)
            print(f"raw profile saved to {args.pstats}")
        for key, title in (("cumulative", "cumulative time"), ("tottime", "own time (tottime)")):
            buffer = io.StringIO()
            stats = pstats.Stats(profile, stream=buffer)
            stats.strip_dirs().sort_stats(key).print_stats(args.top)
            text = buffer.getvalue()
            # Drop pstats' preamble; keep the header line and the rows.
            start = text.find("   ncalls")
            print()
            print(f"== top {args.top} by {title} ==")
            print(text[start:].rstrip() if start >= 0 else text.rstrip())
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
