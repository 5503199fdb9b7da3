"""Progress and results on a terminal or in a log.

On a terminal: one status line, `[done/total] description`, rewritten in place.
On a pipe or in CI (the CI variable): one plain line per job that runs.
`-v` adds a line per job saying Run, Cached or Miss and why. A build ends with
a JOB STATUS table; a dry run prints the commands that would run instead.
"""

from __future__ import annotations

import os
import re
import sys
import _thread
import time
from collections import Counter
from typing import TextIO

from rlmake.model import Decision, Job, Outcome, ReasonKind, Status
from rlmake.reporters.base import Phase

_TAIL_LINES = 20
_COLUMNS = ("PENDING", "RUNNING", "FAILED", "CACHED", "RESTORED", "DONE", "TOTAL")


class ConsoleReporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, *,
                 verbose: bool = False, dry_run: bool = False, status_line: bool | None = None,
                 color: bool | None = None, table: bool = True):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.verbose = verbose
        self.dry_run = dry_run
        interactive = self.out.isatty() and not os.environ.get("CI")
        self.status_line = interactive if status_line is None else status_line
        self.color = (interactive and "NO_COLOR" not in os.environ) if color is None else color
        self.table = table
        self.wants_every_job = verbose      # -v says Cached for each job, even on a no-op
        self.total = 0
        self.finished = 0
        self._line_shown = False
        # cache lookups warn from their threads (_thread: `threading` is a millisecond of
        # every no-op's import, and a lock is all this needs)
        self._warning_lock = _thread.allocate_lock()

    # --- events ---------------------------------------------------------------------

    def phase_started(self, phase: Phase) -> None:
        pass

    def build_started(self, total: int) -> None:
        self.total = total

    def job_started(self, job: Job, decision: Decision) -> None:
        if self.verbose:                    # as ninja -v: the command itself, as it starts
            shown = job.commands if job.label() != "; ".join(job.commands) else ()
            self._line("\n".join([_verbose_line(job, decision),
                                  *(f"  {command}" for command in shown)]))
        if self.status_line:
            self._status(f"[{self.finished}/{self.total}] {job.label()}")

    def job_finished(self, outcome: Outcome) -> None:
        self.finished += 1
        job = outcome.job
        if outcome.status is Status.WOULD_RUN:
            if self.verbose and outcome.decision is not None and outcome.decision.reasons:
                self._line(f"# {job.target}: {outcome.decision.reasons[0]}")
            for command in job.commands:     # a dry run's list: flushed once it ends,
                self._clear_status()            # or before anything else is said
                self.out.write(f"{command}\n")
            return
        if outcome.status is Status.CACHED:
            if self.verbose and outcome.kept_by:
                self._line(f"Cached {job.target}: {kept_sentence(job.target, outcome.kept_by)}")
            elif self.verbose:
                self._line(f"Cached {job.target}: cached result is up to date")
            return
        if outcome.status in (Status.DONE, Status.RESTORED):
            label = job.label()
            if outcome.cache_source:
                label += f" (restored from {outcome.cache_source})"
            if not self.status_line:
                self._line(f"[{self.finished}/{self.total}] {label}")
            else:
                self._status(f"[{self.finished}/{self.total}] {label}")
            if outcome.output:
                self._line(outcome.output.rstrip("\n"))
        elif outcome.status is Status.FAILED:
            self._failure(outcome)

    def warning(self, text: str) -> None:
        with self._warning_lock:        # one write per line: two warnings never share one
            self._clear_status()
            self.out.flush()            # after the lines said before it
            self.err.write(f"rlmake: warning: {text}\n")
            self.err.flush()

    def build_finished(self, outcomes: list[Outcome], elapsed: float) -> None:
        self._clear_status()
        self.out.flush()
        if self.dry_run:
            if not any(o.status is Status.WOULD_RUN for o in outcomes):
                print("rlmake: nothing to do", file=self.err)
            return
        worked = any(o.status in (Status.DONE, Status.RESTORED, Status.FAILED, Status.SKIPPED,
                                  Status.INTERRUPTED, Status.LOST)
                     for o in outcomes if o.job.commands)
        if not worked:
            self._line("rlmake: nothing to do, everything is up to date")
        elif self.table:
            reported = sum(1 for outcome in outcomes if outcome.job.commands)
            self._line(status_table(outcomes, up_to_date=max(0, self.total - reported)))

    # --- printing ---------------------------------------------------------------------

    def _failure(self, outcome: Outcome) -> None:
        job = outcome.job
        red = ("\x1b[31m", "\x1b[0m") if self.color else ("", "")
        lines = [f"{red[0]}FAILED: {job.target}{red[1]}"]
        if outcome.failed_command:
            lines.append(f"  command: {outcome.failed_command}")
        if outcome.error:
            lines.append(f"  {outcome.error}")
        elif outcome.exit_code is not None:
            lines.append(f"  exit status {outcome.exit_code}")
        tail = outcome.output.rstrip("\n").splitlines()[-_TAIL_LINES:]
        lines.extend(f"  | {line}" for line in tail)
        self._clear_status()
        self.out.flush()                # after the lines said before it
        print("\n".join(lines), file=self.err, flush=True)

    def _line(self, text: str) -> None:
        self._clear_status()
        self.out.write(text + "\n")     # one write per line (print makes two system calls)
        self.out.flush()

    def _status(self, text: str) -> None:
        width = max(20, _terminal_width() - 1)
        self.out.write("\r" + text[:width] + "\x1b[K")
        self.out.flush()
        self._line_shown = True

    def _clear_status(self) -> None:
        if self._line_shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._line_shown = False


def kept_sentence(target: str, deps: tuple[str, ...] | list[str]) -> str:
    """An early cutoff, as -v and `log` say it."""
    rebuilt = ", ".join(deps)
    return f"{rebuilt} {'was' if len(deps) == 1 else 'were'} rebuilt to identical bytes; {target} kept"


def _verbose_line(job: Job, decision: Decision) -> str:
    reason = decision.reasons[0] if decision.reasons else None
    if reason is None or reason.kind in (ReasonKind.NEVER_BUILT, ReasonKind.LAST_RUN_FAILED,
                                         ReasonKind.LAST_RUN_STOPPED, ReasonKind.FORCED,
                                         ReasonKind.ALWAYS):
        return f"Run    {job.target}: {reason or 'stale'}"
    return f"Miss   {job.target}: cached result is no longer valid ({reason})"


_COLUMN_OF = {Status.DONE: "DONE", Status.CACHED: "CACHED", Status.FAILED: "FAILED",
              Status.RESTORED: "RESTORED", Status.SKIPPED: "PENDING", Status.WOULD_RUN: "PENDING",
              Status.INTERRUPTED: "PENDING", Status.LOST: "PENDING"}


def status_table(outcomes: list[Outcome], max_rules: int = 15, up_to_date: int = 0) -> str:
    """The JOB STATUS table: a row per rule that did work or failed, in plan order (at most
    `max_rules`, the rest folded into one row), one row for every job that was up to
    date, and an ALL row. Up-to-date jobs always share their row, whether this build
    decided them or knew them unchanged without looking (`up_to_date`), so that the
    table reads the same for the same work.

    Rules are named by their key with each `{{ ... }}` shown as `*`."""
    counted = [(readable_rule(o.job.rule), _COLUMN_OF[o.status]) for o in outcomes
               if o.job.commands]
    busy = Counter(pair for pair in counted if pair[1] != "CACHED")
    rules = list(dict.fromkeys(rule for rule, _ in busy))
    rows = {rule: Counter({column: busy[(rule, column)] for column in _COLUMNS
                           if (rule, column) in busy})
            for rule in rules[:max_rules]}
    everything = Counter(column for _, column in counted)
    everything["CACHED"] += up_to_date
    if len(rules) > max_rules:
        folded = len(rules) - max_rules
        rows[f"({_count(folded, 'more rule')})"] = Counter(
            column for rule, column in busy.elements() if rule not in rows)
    if everything["CACHED"]:
        rows[f"({_count(everything['CACHED'], 'job')} up to date)"] = Counter(
            {"CACHED": everything["CACHED"]})
    rows["ALL"] = everything
    for count in rows.values():
        count["TOTAL"] = sum(count[c] for c in _COLUMNS if c != "TOTAL")
    width = max(len("RULE"), *(len(rule) for rule in rows))
    header = f"{'RULE':<{width}} " + " ".join(f"{c:>8}" for c in _COLUMNS)
    lines = [f"{rule:<{width}} " + " ".join(f"{count[c]:>8}" for c in _COLUMNS)
             for rule, count in rows.items()]
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    return "\n".join([f"JOB STATUS {stamp}", header, *lines])


_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def readable_rule(text: str) -> str:
    """A rule key or description template for people: `lib/lib{{ name }}.a` reads as
    `lib/lib*.a`."""
    return _PLACEHOLDER.sub("*", text) if "{" in text else text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _terminal_width() -> int:
    """The terminal's width; 80 when it will not say, or says 0 (a pty nobody sized)."""
    try:
        return os.get_terminal_size().columns or 80
    except OSError:
        return 80
