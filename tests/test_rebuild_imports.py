"""What a build that runs a job (an edit's rebuild, every editor save) must not import:
statistics and socket cost 4 ms and 3 ms for one median and one host name."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from checkout import ROOT
from hypothesis import given
from hypothesis import strategies as st

from conftest import write_project
from test_plain_build import PROBE     # a plain `rlmake build`, then sys.modules
from rlmake.readyqueue import _median


@pytest.mark.integration
def test_a_one_job_rebuild_imports_neither_statistics_nor_socket(tmp_path):
    project = write_project(tmp_path, """
        rules:
          out: {deps: [in.txt], command: "cp in.txt out"}
        """, {"in.txt": "one\\n"})
    for text in ("one\\n", "two\\n"):           # the first build, then a rebuild
        (project / "in.txt").write_text(text)
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=60, cwd=project,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        assert (project / "out").read_text() == text
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "rlmake.scheduler" in loaded and "rlmake.cache.artifacts" in loaded   # it ran
    assert "statistics" not in loaded
    assert "socket" not in loaded


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1))
def test_the_median_is_the_one_statistics_gives(values):
    assert _median(values) == statistics.median(values)
