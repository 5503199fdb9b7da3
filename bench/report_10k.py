#!/usr/bin/env python3
"""How long a headless Chromium takes to open `rlmake report`'s page of a 10,000-job build.

    python bench/report_10k.py [--jobs 10000] [--repeat 3] [--keep]

A real build: bench/generate.py writes a project of JOBS `cp` jobs, `rlmake build` runs
them (recorded in the state database as any build is), `rlmake report` writes the page.
The browser is timed from start to exit of `chromium --headless --dump-dom`, on the
report and on an empty page (the browser's own start and exit); the figure that counts
is the difference, the median of --repeat runs. The page's self-test (marks drawn,
script errors) is checked too. Target: under 2 s. Needs a Chromium (apt-get install -y
chromium); everything is written under bench/out/ and removed unless --keep.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from generate import generate                                      # noqa: E402
from headless import find_browser, selftest, timed_dump_dom, dump_dom     # noqa: E402

RLMAKE = (sys.executable, "-m", "rlmake")
TARGET_SECONDS = 2.0


def timed(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*RLMAKE, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   env={"CI": "1", "PATH": "/usr/bin:/bin",
                        "PYTHONPATH": str(HERE.parent)})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print("no chromium found: apt-get install -y chromium", file=sys.stderr)
        return 2
    out = HERE / "out" / "report_10k"
    shutil.rmtree(out, ignore_errors=True)
    try:
        generate(out / "project", options.jobs)
        project = out / "project"
        build = timed("build", "-j", "8", cwd=project)
        render = timed("report", "-o", str(out / "report.html"), cwd=project)
        page = out / "report.html"
        empty = out / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>\n")
        state = selftest(dump_dom(browser, page))
        if state["errors"] or state["marks"] != state["jobs"]:
            print(f"the page is broken: {state}", file=sys.stderr)
            return 1
        blank, loaded = [], []
        for _ in range(options.repeat):
            blank.append(timed_dump_dom(browser, empty))
            loaded.append(timed_dump_dom(browser, page))
        opens = statistics.median(loaded) - statistics.median(blank)
        print(f"jobs recorded:           {state['jobs']} (marks drawn: {state['marks']}, "
              f"critical path: {state['critical']} jobs)")
        print(f"rlmake build -j 8:       {build:.2f} s")
        print(f"rlmake report:           {render:.2f} s, page {page.stat().st_size / 1e6:.2f} MB")
        print(f"chromium, empty page:    {statistics.median(blank):.2f} s (median of "
              f"{options.repeat}: {', '.join(f'{t:.2f}' for t in blank)})")
        print(f"chromium, report:        {statistics.median(loaded):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in loaded)})")
        verdict = "ok" if opens < TARGET_SECONDS else "TOO SLOW"
        print(f"report opens in:         {opens:.2f} s (target < {TARGET_SECONDS:.0f} s: "
              f"{verdict})")
        return 0 if opens < TARGET_SECONDS else 1
    finally:
        if not options.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
