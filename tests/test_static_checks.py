"""ruff and mypy, configured in pyproject.toml, run with the tests: one command checks all."""

from __future__ import annotations

import subprocess
import sys

import pytest
from checkout import ROOT

pytestmark = pytest.mark.integration


def check(*command: str) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff():
    check("ruff", "check", "rlmake", "tests", "bench")


def test_mypy():
    check("mypy")
