"""The build as a Chrome trace (`rlmake build --trace FILE`), for Perfetto (ui.perfetto.dev)
and chrome://tracing: the trace-event "JSON Object Format".

    {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {"rlmake", "started", "status"}}

One process; thread 0, named "rlmake", holds rlmake's own phases (Phase: loading the plan,
deciding what is stale, running, recording); threads 1, 2, ... are the parallel slots,
assigned after the fact (report/slots.py). Each job with commands is one complete event
("ph": "X") on its slot: name = target, cat = its status (so restores are a category of
their own), args = rule, target, status, reasons, exit code, cache source; a cache lookup
that missed is a slice of its own ("cache lookup") just before its job's. Timestamps
("ts", "dur") are microseconds from the moment rlmake began the build.

A job that never ran (up to date, skipped, interrupted before it started) is an event
of no duration at the moment it was settled; a job interrupted while it ran lasts until
the build stopped. Written through report files' atomic write, when the build ends,
failed or interrupted.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from rlmake import __version__
from rlmake.model import Decision, Job, Outcome
from rlmake.report.slots import assign_slots
from rlmake.reporters.base import Phase
from rlmake.reporters.reportfile import ReportFile, build_status, cache_source, reported

PID = 1
RLMAKE_TID = 0


class TraceReport(ReportFile):
    def __init__(self, path: str):
        super().__init__(path)
        self.began = time.time()
        self.phases: list[tuple[Phase, float]] = []
        self.ended: float | None = None
        # When jobs without times of their own (never ran, or ran until an interrupt)
        # were seen to start and to be settled.
        self.seen_start: dict[str, float] = {}
        self.seen_end: dict[str, float] = {}

    def phase_started(self, phase: Phase) -> None:
        self.phases.append((phase, time.time()))

    def job_started(self, job: Job, decision: Decision) -> None:
        self.seen_start[job.target] = time.time()

    def job_finished(self, outcome: Outcome) -> None:
        self.seen_end[outcome.job.target] = time.time()

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None:
        self.ended = time.time()
        super().build_finished(outcomes, elapsed)

    def render(self, outcomes: list[Outcome], elapsed: float, started: float) -> bytes:
        trace = {"traceEvents": self.events(outcomes), "displayTimeUnit": "ms",
                 "otherData": {"rlmake": __version__, "status": build_status(reported(outcomes)),
                               "started": _iso(self.began)}}
        return (json.dumps(trace, separators=(",", ":")) + "\n").encode()

    def events(self, outcomes: list[Outcome]) -> list[dict[str, Any]]:
        ended = self.ended if self.ended is not None else time.time()
        jobs = reported(outcomes)
        spans = [self.span(outcome, ended) for outcome in jobs]
        slots = assign_slots(spans)
        events = _names("rlmake build", max(slots, default=-1) + 1)
        events.extend(self.phase_events(ended))
        for outcome, (start, end), slot in zip(jobs, spans, slots, strict=True):
            if outcome.looked_up is not None:       # the span began with the lookup
                events.append(self.lookup_event(outcome, *outcome.looked_up, slot))
                start = max(start, outcome.started)
            events.append(self.job_event(outcome, start, end, slot))
        return events

    def span(self, outcome: Outcome, ended: float) -> tuple[float, float]:
        """When the job ran, from the cache lookup that missed before it if there was one:
        its own times if it has them, else as this reporter saw it."""
        if outcome.started and outcome.ended >= outcome.started:
            first = outcome.looked_up[0] if outcome.looked_up is not None else outcome.started
            return min(first, outcome.started), outcome.ended
        target = outcome.job.target
        settled = self.seen_end.get(target, ended)
        started = self.seen_start.get(target)
        return (started, ended) if started is not None else (settled, settled)

    def phase_events(self, ended: float) -> list[dict[str, Any]]:
        ends = [at for _, at in self.phases[1:]] + [ended]
        return [{"name": phase.value, "cat": "rlmake", "ph": "X", "pid": PID, "tid": RLMAKE_TID,
                 "ts": self.micros(at), "dur": max(0, self.micros(end) - self.micros(at))}
                for (phase, at), end in zip(self.phases, ends, strict=True)]

    def job_event(self, outcome: Outcome, start: float, end: float, slot: int
                  ) -> dict[str, Any]:
        job = outcome.job
        reasons = outcome.decision.reasons if outcome.decision is not None else ()
        return {"name": job.target, "cat": outcome.status.value, "ph": "X", "pid": PID,
                "tid": slot + 1, "ts": self.micros(start),
                "dur": max(0, self.micros(end) - self.micros(start)),
                "args": {"rule": job.rule, "target": job.target, "status": outcome.status.value,
                         "reasons": [str(reason) for reason in reasons],
                         "exit_code": outcome.exit_code, "cache_source": cache_source(outcome)}}

    def lookup_event(self, outcome: Outcome, start: float, end: float, slot: int
                     ) -> dict[str, Any]:
        """The cache lookup that missed before the job ran: a slice of its own, just before
        the job's on its slot (a hit is the job's own slice, in category `restored`)."""
        return {"name": f"cache lookup: {outcome.job.target}", "cat": "cache lookup", "ph": "X",
                "pid": PID, "tid": slot + 1, "ts": self.micros(start),
                "dur": max(0, self.micros(end) - self.micros(start)),
                "args": {"target": outcome.job.target, "found": False}}

    def micros(self, at: float) -> int:
        """Whole microseconds since rlmake began the build (never before 0: a clock that
        stepped back is drawn at the start). Whole, so that a job that starts as another
        ends touches it and never overlaps it by a rounding error."""
        return max(0, round((at - self.began) * 1e6))


def _names(process: str, slots: int) -> list[dict[str, Any]]:
    """The "M" metadata events that name the process and its threads, in track order."""
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "args": {"name": process}}]
    names = ["rlmake", *(f"slot {n}" for n in range(1, slots + 1))]
    for tid, name in enumerate(names):
        events.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
                       "args": {"name": name}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                       "args": {"sort_index": tid}})
    return events


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")
