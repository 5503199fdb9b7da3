"""The build as a JUnit XML test report, which CI systems (GitHub Actions test-report
actions, GitLab `artifacts: reports: junit`, Jenkins) display natively.

One <testsuite name="rlmake">; one <testcase classname=RULE name=TARGET time=SECONDS>
per job with commands. A failed job carries <failure message="exit status N"> with
the tail of its output; a job lost with its executor (a Dask scheduler that went away
while it ran) carries <error type="executor">, JUnit's word for a test that could not
finish, as against one that failed; a skipped job (a job it needs failed) carries <skipped/>;
a cached or restored job passes, with <system-out> saying so. Text that XML 1.0
cannot hold (control characters, terminal colour codes) is removed.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from rlmake.model import Outcome, Status
from rlmake.reporters.reportfile import ReportFile, cache_source, output_tail, reported

# ANSI escape sequences (colours, cursor moves), then what XML 1.0 forbids outright:
# C0 controls but tab, newline, carriage return; surrogates; U+FFFE and U+FFFF.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` with everything XML 1.0 cannot carry removed."""
    return _NOT_XML.sub("", _ANSI.sub("", text))


class JUnitReport(ReportFile):
    def render(self, outcomes: list[Outcome], elapsed: float, started: float) -> bytes:
        suite = junit_suite(outcomes, elapsed, started)
        ET.indent(suite)
        return ET.tostring(suite, encoding="utf-8", xml_declaration=True) + b"\n"


def junit_suite(outcomes: list[Outcome], elapsed: float, started: float) -> ET.Element:
    jobs = reported(outcomes)
    failures = sum(1 for o in jobs if o.status is Status.FAILED)
    errors = sum(1 for o in jobs if o.status is Status.LOST)
    skipped = sum(1 for o in jobs if o.status in (Status.SKIPPED, Status.WOULD_RUN,
                                                  Status.INTERRUPTED))
    suite = ET.Element("testsuite", {
        "name": "rlmake",
        "tests": str(len(jobs)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": f"{elapsed:.3f}",
        "timestamp": datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": xml_text(socket.gethostname()),
    })
    for outcome in jobs:
        suite.append(_testcase(outcome))
    return suite


def _testcase(outcome: Outcome) -> ET.Element:
    job = outcome.job
    case = ET.Element("testcase", {"classname": xml_text(job.rule), "name": xml_text(job.target),
                                   "time": f"{outcome.duration:.3f}"})
    status = outcome.status
    if status is Status.FAILED:
        message = outcome.error or (f"exit status {outcome.exit_code}"
                                    if outcome.exit_code is not None else "failed")
        failure = ET.SubElement(case, "failure", {"message": xml_text(message),
                                                  "type": "error" if outcome.error else "exit"})
        lines = [f"$ {outcome.failed_command}"] if outcome.failed_command else []
        if outcome.output:
            lines.append(output_tail(outcome).rstrip("\n"))
        failure.text = xml_text("\n".join(lines))
    elif status is Status.LOST:
        ET.SubElement(case, "error", {"message": xml_text(outcome.error or "executor lost"),
                                      "type": "executor"})
    elif status is Status.SKIPPED:
        ET.SubElement(case, "skipped", {"message": "not run: a job it needs failed "
                                                   "or the build stopped"})
    elif status is Status.WOULD_RUN:
        ET.SubElement(case, "skipped", {"message": "dry run (-n): would run"})
    elif status is Status.INTERRUPTED:
        ET.SubElement(case, "skipped", {"message": "not finished: the build was interrupted"})
    elif status is Status.CACHED:
        ET.SubElement(case, "system-out").text = "cached"
    elif status is not Status.DONE:                    # restored, and any status to come
        source = cache_source(outcome)
        said = status.value + (f" from {source}" if source else "")
        ET.SubElement(case, "system-out").text = xml_text(said)
    return case
