"""A real headless Chromium, driven from its command line (no driver, no Python package):
`--dump-dom` prints the DOM after the page's scripts ran, `--screenshot` takes a PNG.

`find_browser()` is None when none is installed (.ci/run installs Debian's `chromium`);
tests then skip, saying so.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
NO_BROWSER = ("no headless browser found (looked for " + ", ".join(BROWSERS)
              + "); install one: apt-get install -y chromium")
_SELFTEST = re.compile(r'<pre id="rlmake-selftest"[^>]*>(.*?)</pre>', re.DOTALL)


def find_browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def _run(browser: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="rlmake-chromium-") as profile:
        done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{browser} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def dump_dom(browser: str, page: Path, fragment: str = "") -> str:
    """The DOM of `page` (a file) once its scripts have run, as HTML."""
    return _run(browser, "--dump-dom", page.resolve().as_uri() + fragment).stdout


def timed_dump_dom(browser: str, page: Path) -> float:
    """Seconds a `--dump-dom` of `page` takes, start to exit."""
    started = time.perf_counter()
    dump_dom(browser, page)
    return time.perf_counter() - started


def screenshot(browser: str, page: Path, png: Path, fragment: str = "",
               size: tuple[int, int] = (1400, 900)) -> None:
    _run(browser, f"--screenshot={png.resolve()}", f"--window-size={size[0]},{size[1]}",
         page.resolve().as_uri() + fragment)


def selftest(dom: str) -> dict:
    """What the report page wrote about itself (marks drawn, errors caught)."""
    found = _SELFTEST.search(dom)
    if found is None:
        raise AssertionError("the page wrote no self-test:\n" + dom[:3000])
    return json.loads(html.unescape(found.group(1)))


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    data = png.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{png} is not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
