"""What a no-op build spends before it starts: modules it must not import, and classes
that must stay cheap to create (every editor save pays for them)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from checkout import ROOT

from conftest import write_project

PROBE = """
import json, sys
from rlmake.cli import main
main(["build"], standalone_mode=False)
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.integration
def test_a_no_op_build_imports_no_difflib(tmp_path):
    """difflib (a did-you-mean on a mistake) is imported when a mistake is made. Run in
    the project, without -C: click itself imports difflib to parse `-C` (it tries it as a
    long option first), and an editor's build runs where the project is."""
    project = write_project(tmp_path, """
        rules:
          out: {deps: [in.txt], command: "cp in.txt out"}
        """, {"in.txt": "x\\n"})
    for _ in range(2):                  # the first build, then the no-op
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=60, cwd=project,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "rlmake.state" in loaded             # the probe sees the no-op's modules
    assert "difflib" not in loaded


def test_the_no_op_paths_records_are_not_dataclasses():
    """A frozen dataclass costs about ten NamedTuples to create at import."""
    from rlmake import buildconfig, config, model, state, uptodate
    from rlmake.cache import settings

    cheap = [model.Location, model.Rulesfile, model.BuildOptions, model.Reason,
             model.Decision, model.Outcome, state.CacheUse, state.Execution,
             uptodate.Piece, uptodate.Snapshot, config.Config, buildconfig.BuildConfig,
             settings.CacheSettings]
    assert [cls.__name__ for cls in cheap if dataclasses.is_dataclass(cls)] == []
