"""`rlmake report`: the HTML page of a recorded build, opened in a real headless Chromium
(tests/headless.py). The page writes what it drew and any script error into a hidden
element, which --dump-dom shows: one mark per job, no error, the side panel filled from
a `#job=TARGET` link; a screenshot is a real picture of the right size."""

from __future__ import annotations

import html
import re

import pytest
from buildkit import Project
from headless import NO_BROWSER, dump_dom, find_browser, png_size, screenshot, selftest

pytestmark = pytest.mark.integration

BROWSER = find_browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)

# Four jobs that ran (two at once), one failing with output that tries to end the page's
# script; the aggregate `all` runs nothing.
RULES = """
rules:
  all: {deps: [a, b, c, d]}
  a: {command: "sleep 0.2; echo a > a"}
  b: {command: "sleep 0.2; echo b > b"}
  c: {deps: [a], command: "echo '</script><script>document.title=1</script>'; exit 4"}
  d: {deps: [b], command: "echo d > d"}
"""


@pytest.fixture
def built(tmp_path) -> Project:
    proj = Project(tmp_path / "proj")
    proj.rules(RULES)
    proj.build("-k", "-j", "2", expect=1)
    return proj


def panel_text(dom: str, element: str) -> str:
    found = re.search(rf'id="{element}"[^>]*>(.*?)</', dom, re.DOTALL)
    assert found, f"no #{element} in the page"
    return html.unescape(found.group(1))


@needs_browser
def test_report_opens_in_a_browser_with_a_mark_per_job_and_no_error(built):
    result = built.cli("report", "-o", "out/report.html")
    page = built.root / "out" / "report.html"
    assert f"to {page}" in result.stdout, result.describe()
    dom = dump_dom(BROWSER, page, "#job=c")
    state = selftest(dom)
    assert state["errors"] == []
    assert state["jobs"] == 4 and state["marks"] == 4
    assert state["hitsChecked"] >= 1 and state["hitsWrong"] == 0
    assert state["critical"] >= 2                       # a then c, or b then d
    assert state["selected"] == "c"
    assert "</script><script>document.title=1</script>" in panel_text(dom, "panel-output")
    assert "exit 4" in panel_text(dom, "panel-commands")
    assert re.search(r"<title>rlmake build [0-9a-f]{8}</title>", dom)


@needs_browser
def test_report_screenshot_is_a_real_picture(built, tmp_path):
    built.cli("report")
    png = tmp_path / "shot.png"
    screenshot(BROWSER, built.root / "rlmake-report.html", png)
    assert png_size(png) == (1400, 900)
    assert png.stat().st_size > 20_000          # a blank page of that size is a few KB


def test_report_names_a_build_by_a_unique_prefix(built):
    built.build("-k", expect=1)                 # c fails again: a second build
    ids = re.findall(r'"id": "([0-9a-f]{8})"', built.cli("log", "--json").stdout)
    assert len(ids) == 2
    older = ids[1]
    prefix = next(older[:n] for n in range(1, 9) if not ids[0].startswith(older[:n]))
    result = built.cli("report", prefix, "-o", "older.html")
    assert f"build {older}" in result.stdout
    assert f'"id":"{older}"' in built.read("older.html")
    missing = built.cli("report", "zzzz", expect=2)
    assert "no execution 'zzzz'" in missing.stderr


def test_report_without_a_recorded_build_says_so(tmp_path):
    proj = Project(tmp_path / "proj")
    proj.rules("rules:\n  x: {command: 'true'}\n")
    result = proj.cli("report", expect=2)
    assert "no build has been recorded" in result.stderr
    assert not proj.exists("rlmake-report.html")


@needs_browser
def test_report_of_a_build_that_ran_nothing_opens_without_error(tmp_path):
    proj = Project(tmp_path / "proj")
    proj.rules("rules:\n  x: {command: 'echo x > x'}\n")
    proj.build()
    proj.build()                                # up to date: the last build ran nothing
    proj.cli("report")
    dom = dump_dom(BROWSER, proj.root / "rlmake-report.html")
    state = selftest(dom)
    assert state["errors"] == [] and state["jobs"] == 0 and state["marks"] == 0
    assert "No job ran." in panel_text(dom, "critical-summary")
