"""A no-op build loads none of the Rulesfile-to-plan layers (YAML, Jinja2, networkx,
rlmake.rules): their import time would be paid on the command users run most."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from checkout import ROOT

from conftest import write_project

pytestmark = pytest.mark.integration

FENCED = ("yaml", "jinja2", "networkx", "rlmake.rules")

PROBE = """
import json, sys
from rlmake.cli import main
try:
    main(["-C", sys.argv[1], "build"], standalone_mode=False)
finally:
    loaded = sorted(name for name in sys.modules
                    if name.split(".")[0] in ("yaml", "jinja2", "networkx")
                    or name.startswith("rlmake.rules"))
    print(json.dumps(loaded), file=sys.stderr)
"""


def loaded_by_a_build(project) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(project)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_a_no_op_build_imports_nothing_of_the_planning_layers(tmp_path):
    project = write_project(tmp_path, """
        rules:
          all: {deps: [out]}
          out: {deps: [in.txt], command: "cp in.txt out"}
        """, {"in.txt": "x\n"})
    first = loaded_by_a_build(project)
    assert {"yaml", "jinja2", "rlmake.rules"} <= set(first)     # the probe sees them load
    assert loaded_by_a_build(project) == []
    (project / "in.txt").write_text("edited\n")
    assert loaded_by_a_build(project) == []         # an edit reuses the stored plan too
