"""A machine-readable report of one build, for CI dashboards and scripts.

Written once, when the build finishes, through a temporary file (never half
written). Lists the jobs with commands, in plan order:

    {"rlmake": "0.1.0", "started": "2025-01-31T09:05:02.123+00:00", "elapsed": 1.234,
     "status": "succeeded" | "failed" | "interrupted" | "executor failed",
     "jobs": [{"target", "rule", "status", "reasons", "duration", "exit_code",
               "cache_source", "error", "output_tail"}, ...],
     "counts": {"done": 2, "cached": 3, "failed": 0, "skipped": 0, ...}}

`status` of a job is its Status value (done, cached, failed, skipped, restored,
interrupted, lost; "would run" in a dry run); `reasons` why it ran, as `rlmake build -v`
says them. A job is `lost` when the executor went away while it ran (a Dask scheduler
lost mid-build): no command failed, its result is unknown, and `error` says what
happened; the build's `status` is then "executor failed";
`output_tail` the last 4000 characters a failed job printed (null otherwise).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from rlmake import __version__
from rlmake.model import Outcome, Status
from rlmake.reporters.reportfile import (ReportFile, build_status, cache_source, output_tail,
                                         reported)


class JsonReport(ReportFile):
    def render(self, outcomes: list[Outcome], elapsed: float, started: float) -> bytes:
        return (json.dumps(build_report(outcomes, elapsed, started), indent=2) + "\n").encode()


def build_report(outcomes: list[Outcome], elapsed: float,
                 started: float | None = None) -> dict[str, Any]:
    if started is None:                     # a no-op build finishes without starting
        started = time.time() - elapsed
    jobs = reported(outcomes)
    counts = Counter({status.value: 0 for status in Status if status is not Status.WOULD_RUN})
    counts.update(outcome.status.value for outcome in jobs)
    return {
        "rlmake": __version__,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="milliseconds"),
        "elapsed": round(elapsed, 3),
        "status": build_status(jobs),
        "jobs": [job_entry(outcome) for outcome in jobs],
        "counts": dict(counts),
    }


def job_entry(outcome: Outcome) -> dict[str, Any]:
    failed = outcome.status is Status.FAILED
    reasons = outcome.decision.reasons if outcome.decision is not None else ()
    return {
        "target": outcome.job.target,
        "rule": outcome.job.rule,
        "status": outcome.status.value,
        "reasons": [str(reason) for reason in reasons],
        "duration": round(outcome.duration, 3),
        "exit_code": outcome.exit_code,
        "cache_source": cache_source(outcome),
        "error": outcome.error,
        "failed_command": outcome.failed_command,
        "output_tail": output_tail(outcome) if failed else None,
    }
