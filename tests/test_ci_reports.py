"""Build reports for CI: --report (JSON) and --junit (JUnit XML), and FanOut, which lets
the console and the report files hear one build together.

The reporters are driven through the Python API (Project.build with a FanOut), the way
`rlmake build --report/--junit` drives them; the CLI tests at the end run the installed
`rlmake` (CI=1) once the flags are wired in cli.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from checkout import RLMAKE

from rlmake import __version__
from rlmake.errors import BuildFailed, RlmakeError
from rlmake.model import Decision, Job, Location, Outcome, Reason, ReasonKind, Status
from rlmake.project import Project
from rlmake.reporters.console import ConsoleReporter
from rlmake.reporters import reportfile
from rlmake.reporters.fanout import FanOut
from rlmake.reporters.json_report import JsonReport, build_report
from rlmake.reporters.junit import JUnitReport, junit_suite, xml_text
from rlmake.model import BuildOptions

# Two independent jobs, one that needs `a.txt`, and an aggregate that gathers them.
RULES = """
rules:
  all:
    deps: [b.txt, c.txt]
  a.txt:
    deps: [in.txt]
    command: cp in.txt a.txt
  b.txt:
    deps: [a.txt]
    command: cat a.txt > b.txt
  c.txt:
    deps: [other.txt]
    command: cp other.txt c.txt
"""

# a.txt fails noisily (5000+ characters, escape and control characters in its output);
# b.txt needs it and is skipped; c.txt does not and is built (-k).
FAILING = """
rules:
  all:
    deps: [b.txt, c.txt]
  a.txt:
    deps: [in.txt]
    command: python3 noisy.py
  b.txt:
    deps: [a.txt]
    command: cat a.txt > b.txt
  c.txt:
    deps: [other.txt]
    command: cp other.txt c.txt
"""

NOISY = r"""
import sys
sys.stdout.write("x" * 5000 + "\n")
sys.stdout.write("\x1b[31merror:\x1b[0m bad \x00byte\x01 and \x0bvt\x7f end\n")
sys.stdout.write("LAST LINE\n")
sys.exit(3)
"""


@pytest.fixture(autouse=True)
def ci_env(monkeypatch):
    monkeypatch.setenv("CI", "1")
    monkeypatch.delenv("RLMAKE_HASH", raising=False)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text)
        path.write_text(text[1:] if text.startswith("\n") else text)


@dataclass
class Built:
    report: dict
    junit: ET.Element
    out: str
    err: str
    failed: BuildFailed | None

    def job(self, target: str) -> dict:
        [entry] = [j for j in self.report["jobs"] if j["target"] == target]
        return entry

    def case(self, target: str) -> ET.Element:
        [case] = [c for c in self.junit.iter("testcase") if c.get("name") == target]
        return case


def build(root: Path, *targets: str, report: Path | None = None, junit: Path | None = None,
          **options) -> Built:
    """Build `root` through the Python API with console + JSON + JUnit reporters."""
    report = report or root.parent / f"{root.name}-report.json"
    junit = junit or root.parent / f"{root.name}-junit.xml"
    out, err = io.StringIO(), io.StringIO()
    failed = None
    reporter = FanOut(ConsoleReporter(out=out, err=err), JsonReport(str(report)),
                      JUnitReport(str(junit)))
    try:
        project = Project(str(root))
        project.build(list(targets), project.build_config(BuildOptions(jobs=2, **options)),
                      reporter)
    except BuildFailed as error:
        failed = error
    return Built(json.loads(report.read_text()), ET.parse(junit).getroot(),
                 out.getvalue(), err.getvalue(), failed)


def nonzero(counts: dict) -> dict:
    """Counts list every status, zero or not; the ones that happened."""
    return {status: n for status, n in counts.items() if n}


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "proj"
    write(root, {"Rulesfile.yaml": RULES, "in.txt": "in\n", "other.txt": "other\n"})
    return root


@pytest.fixture
def failing(tmp_path) -> Path:
    root = tmp_path / "proj"
    write(root, {"Rulesfile.yaml": FAILING, "in.txt": "in\n", "other.txt": "other\n"})
    (root / "noisy.py").write_text(NOISY.lstrip())
    return root


# --- a build that succeeds --------------------------------------------------------------

@pytest.mark.integration
def test_first_build_reports_every_job_as_done_and_why(project):
    built = build(project)
    assert built.failed is None
    report = built.report
    assert report["rlmake"] == __version__
    assert report["status"] == "succeeded"
    assert isinstance(report["elapsed"], float) and report["elapsed"] >= 0
    assert report["started"].endswith("+00:00")
    # plan order; the aggregate `all` has no command and is not a job of the report
    assert sorted(j["target"] for j in report["jobs"]) == ["a.txt", "b.txt", "c.txt"]
    for entry in report["jobs"]:
        assert entry["status"] == "done"
        assert entry["rule"] == entry["target"]
        assert entry["reasons"] == ["never built"]
        assert entry["exit_code"] == 0
        assert entry["cache_source"] is None
        assert entry["output_tail"] is None
        assert entry["duration"] >= 0
    assert nonzero(report["counts"]) == {"done": 3}
    assert {"done", "cached", "failed", "skipped"} <= set(report["counts"])
    # the console heard the same build
    assert "cp in.txt a.txt" in built.out and "JOB STATUS" in built.out


@pytest.mark.integration
def test_first_build_junit(project):
    suite = build(project).junit
    assert suite.tag == "testsuite"
    assert suite.get("name") == "rlmake"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "0", "0")
    float(suite.get("time"))
    cases = suite.findall("testcase")
    assert sorted((c.get("classname"), c.get("name")) for c in cases) == [
        ("a.txt", "a.txt"), ("b.txt", "b.txt"), ("c.txt", "c.txt")]
    for case in cases:
        float(case.get("time"))
        assert list(case) == []             # passed: no failure, no skipped


@pytest.mark.integration
def test_rebuild_reports_cached_jobs_and_the_changed_source(project):
    build(project)
    (project / "in.txt").write_text("changed\n")
    built = build(project)
    assert built.job("c.txt")["status"] == "cached"
    assert built.job("c.txt")["reasons"] == []
    a = built.job("a.txt")
    assert a["status"] == "done"
    assert len(a["reasons"]) == 1 and a["reasons"][0].startswith("in.txt changed (")
    assert built.report["counts"]["cached"] == 1
    assert built.report["counts"]["done"] == 2
    case = built.case("c.txt")
    assert case.find("system-out").text == "cached"
    assert case.find("failure") is None and case.find("skipped") is None
    assert built.junit.get("tests") == "3" and built.junit.get("failures") == "0"


def age(root: Path, seconds: int = 10) -> None:
    """Move every project file into the past, as time passes between a user's builds:
    rlmake trusts no stat younger than a second, so a fast test otherwise never
    reaches the no-op fast path."""
    for path in root.rglob("*"):
        if ".rlmake" not in path.parts and path.is_file():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 10**9))


@pytest.mark.integration
def test_up_to_date_build_reports_every_job_as_cached(project):
    age(project)
    build(project)
    age(project)
    build(project)                          # hashes everything, saves the up-to-date snapshot
    built = build(project)                  # the no-op fast path
    assert nonzero(built.report["counts"]) == {"cached": 3}
    assert built.junit.get("tests") == "3"


@pytest.mark.integration
def test_forced_build_says_forced(project):
    build(project)
    built = build(project, force=True)
    assert {j["status"] for j in built.report["jobs"]} == {"done"}
    assert built.job("c.txt")["reasons"] == ["forced (-B)"]


# --- a build that fails --------------------------------------------------------------------

@pytest.mark.integration
def test_failed_build_report(failing):
    built = build(failing, keep_going=True)
    assert built.failed is not None
    report = built.report
    assert report["status"] == "failed"
    assert nonzero(report["counts"]) == {"done": 1, "failed": 1, "skipped": 1}
    a = built.job("a.txt")
    assert a["status"] == "failed"
    assert a["exit_code"] == 3
    assert a["failed_command"] == "python3 noisy.py"
    assert a["reasons"] == ["never built"]
    tail = a["output_tail"]
    assert len(tail) == 4000
    assert tail.endswith("LAST LINE\n")
    assert "\x1b[31merror:" in tail          # JSON keeps the output as it was
    b = built.job("b.txt")
    assert b["status"] == "skipped" and b["exit_code"] is None and b["output_tail"] is None
    assert built.job("c.txt")["status"] == "done"
    assert "FAILED: a.txt" in built.err     # the console heard it too


@pytest.mark.integration
def test_failed_build_junit_is_valid_xml_despite_control_characters(failing, tmp_path):
    built = build(failing, keep_going=True)
    raw = (tmp_path / "proj-junit.xml").read_bytes()
    assert b"\x1b" not in raw and b"\x00" not in raw and b"\x01" not in raw
    suite = built.junit
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = built.case("a.txt").find("failure")
    assert failure.get("message") == "exit status 3"
    assert failure.text.startswith("$ python3 noisy.py\n")
    assert "error: bad byte and vt\x7f end" in failure.text
    assert failure.text.rstrip().endswith("LAST LINE")
    assert built.case("b.txt").find("skipped") is not None
    assert built.case("c.txt").find("failure") is None
    assert len(suite.findall(".//failure")) == 1
    assert len(suite.findall(".//skipped")) == 1


@pytest.mark.integration
def test_stopping_at_the_first_failure_skips_the_rest(failing):
    (failing / "Rulesfile.yaml").write_text(textwrap.dedent(FAILING).replace(
        "cp other.txt c.txt", "sleep 0.5 && cp other.txt c.txt"))
    built = build(failing, "b.txt")
    assert built.failed is not None
    assert [j["target"] for j in built.report["jobs"]] == ["a.txt", "b.txt"]
    assert built.report["counts"]["skipped"] == 1


def test_a_command_that_writes_no_output_fails_with_its_reason(tmp_path):
    root = tmp_path / "proj"
    write(root, {"Rulesfile.yaml": """
        rules:
          out.txt:
            command: "true"
        """})
    built = build(root)
    entry = built.job("out.txt")
    assert entry["status"] == "failed" and entry["exit_code"] == 0
    assert "did not write output 'out.txt'" in entry["error"]
    failure = built.case("out.txt").find("failure")
    assert "did not write output 'out.txt'" in failure.get("message")


@pytest.mark.integration
def test_dry_run_reports_what_would_run(project):
    built = build(project, dry_run=True)
    assert {j["status"] for j in built.report["jobs"]} == {"would run"}
    assert built.report["counts"]["would run"] == 3
    assert built.junit.get("skipped") == "3"
    assert not (project / "a.txt").exists()


# --- writing the files ---------------------------------------------------------------------

@pytest.mark.integration
def test_reports_replace_old_files_atomically_and_make_directories(project, tmp_path):
    report = tmp_path / "out" / "deep" / "r.json"
    junit = tmp_path / "out" / "deep" / "j.xml"
    build(project, report=report, junit=junit)
    first = report.read_text()
    (project / "other.txt").write_text("changed\n")
    build(project, report=report, junit=junit)
    assert report.read_text() != first
    assert sorted(p.name for p in report.parent.iterdir()) == ["j.xml", "r.json"]   # no temps
    assert report.stat().st_mode & 0o777 == 0o666 & ~reportfile._UMASK     # not mkstemp's 0600


@pytest.mark.integration
def test_a_report_that_cannot_be_written_is_an_error_after_the_console_summary(project, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = io.StringIO()
    reporter = FanOut(JsonReport(str(blocker / "r.json")), ConsoleReporter(out=out, err=out))
    with pytest.raises(RlmakeError, match="cannot write the report .*r.json"):
        build_in(project, BuildOptions(jobs=2), reporter)
    assert "JOB STATUS" in out.getvalue()   # the reporter after the broken one still heard it


@pytest.mark.integration
def test_relative_report_paths_are_resolved_when_the_reporter_is_made(project, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    reporter = JsonReport("rel.json")
    monkeypatch.chdir(project)
    build_in(project, BuildOptions(jobs=1), reporter)
    assert (tmp_path / "rel.json").exists() and not (project / "rel.json").exists()


# --- the pieces ----------------------------------------------------------------------------

class Recorder:
    def __init__(self, log, name, fail_on=None):
        self.log, self.name, self.fail_on = log, name, fail_on

    def __getattr__(self, event):
        if event.startswith("_"):
            raise AttributeError(event)

        def record(*args):
            self.log.append((self.name, event, args))
            if event == self.fail_on:
                raise ValueError(f"{self.name} broke")
        return record


def test_fanout_forwards_every_event_in_order_and_raises_after_all_heard():
    log = []
    fan = FanOut(Recorder(log, "one", fail_on="build_finished"), Recorder(log, "two"))
    job = Job("t", "r", Location("Rulesfile.yaml", 1), ("t",), (), ("echo",))
    decision = Decision("k", (Reason(ReasonKind.NEVER_BUILT),))
    outcome = Outcome(job, Status.DONE, decision)
    fan.build_started(1)
    fan.job_started(job, decision)
    fan.job_finished(outcome)
    fan.warning("careful")
    with pytest.raises(ValueError, match="one broke"):
        fan.build_finished([outcome], 1.0)
    assert [(name, event) for name, event, _ in log] == [
        (name, event)
        for event in ("build_started", "job_started", "job_finished", "warning", "build_finished")
        for name in ("one", "two")]


def test_fanout_wants_every_job_when_any_reporter_does(tmp_path):
    quiet = ConsoleReporter(out=io.StringIO())
    assert not FanOut(quiet).wants_every_job
    assert FanOut(quiet, JsonReport(str(tmp_path / "r.json"))).wants_every_job
    assert FanOut(ConsoleReporter(out=io.StringIO(), verbose=True)).wants_every_job


@dataclass(frozen=True)
class OutcomeWithSource(Outcome):            # for a model.Outcome without cache_source
    cache_source: str | None = None


def restored(job: Job, source: str) -> Outcome:
    status = getattr(Status, "RESTORED", Status.CACHED)
    try:
        return Outcome(job, status, Decision("k"), cache_source=source)
    except TypeError:
        return OutcomeWithSource(job, status, Decision("k"), cache_source=source)


def test_restored_jobs_carry_their_cache_source():
    job = Job("t", "r", Location("Rulesfile.yaml", 1), ("t",), (), ("echo",))
    outcome = restored(job, "s3://b/rlmake")
    report = build_report([outcome], 0.5)
    assert report["jobs"][0]["cache_source"] == "s3://b/rlmake"
    assert report["jobs"][0]["status"] == outcome.status.value
    assert report["counts"][outcome.status.value] == 1
    case = junit_suite([outcome], 0.5, 0.0).find("testcase")
    assert case.find("failure") is None and case.find("skipped") is None
    if outcome.status is not Status.CACHED:
        assert case.find("system-out").text == "restored from s3://b/rlmake"


def test_xml_text_strips_what_xml_forbids():
    assert xml_text("a\x1b[1;31mb\x1b[0m\x00c\x08d\te\nf\r\ud800g\ufffeh") == "abcd\te\nf\rgh"


# --- the CLI -------------------------------------------------------------------------------

def build_in(root: Path, options: BuildOptions, reporter) -> None:
    project = Project(str(root))
    project.build([], project.build_config(options), reporter)


def rlmake(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CI="1")
    env.pop("RLMAKE_HASH", None)
    return subprocess.run([*RLMAKE, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.integration
def test_cli_writes_both_reports(project, tmp_path):
    done = rlmake(["-C", str(project), "build", "--report", "r.json", "--junit", "j.xml"],
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())          # relative to the cwd
    assert report["status"] == "succeeded"
    assert report["counts"]["done"] == 3
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "JOB STATUS" in done.stdout      # the console still reports


@pytest.mark.integration
def test_cli_failed_build_still_writes_reports_and_exits_1(failing):
    done = rlmake(["build", "-k", "--report", "r.json", "--junit", "j.xml"], cwd=failing)
    assert done.returncode == 1, done.stderr
    report = json.loads((failing / "r.json").read_text())
    assert report["status"] == "failed"
    assert report["counts"]["failed"] == 1 and report["counts"]["skipped"] == 1
    [a] = [job for job in report["jobs"] if job["target"] == "a.txt"]
    assert a["status"] == "failed" and a["exit_code"] == 3
    assert a["output_tail"].endswith("LAST LINE\n")
    suite = ET.parse(failing / "j.xml").getroot()
    assert suite.get("failures") == "1"
    [failure] = suite.iter("failure")
    assert failure.get("message") == "exit status 3"
