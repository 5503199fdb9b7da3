"""A plain `rlmake build` runs without click: the same build, errors and signals.

The entry point (rlmake/__main__.py) runs `build_command.run_build` itself when the
command line is exactly `build`; anything else goes through click. These tests hold
the two to one behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from buildkit import Project, build_env, rlmake_exe, wait_until_dead
from checkout import ROOT
from conftest import write_project
from rlmake import cli
from rlmake.build_command import BuildFlags

PROBE = """
import json, sys
sys.argv = ["rlmake", "build"]
from rlmake.__main__ import main
try:
    main()
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_the_plain_builds_flags_are_what_click_gives_for_no_option():
    params = cli.build.make_context("build", []).params
    flags = {name: value for name, value in params.items()
             if name not in ("directory", "file", "arguments")}
    assert BuildFlags(**flags) == BuildFlags()
    assert set(flags) == set(BuildFlags._fields)


def _plain(root, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*rlmake_exe(), *args], cwd=root, capture_output=True, text=True,
                          timeout=60, env=build_env(), **kwargs)


@pytest.mark.integration
def test_a_plain_no_op_loads_no_click(tmp_path):
    root = write_project(tmp_path, """
        rules:
          out: {deps: [in.txt], command: "cp in.txt out"}
        """, {"in.txt": "x\n"})
    for _ in range(2):                  # the first build, then the no-op
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=60, cwd=root, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert done.stdout == "rlmake: nothing to do, everything is up to date\n"
    assert "rlmake.state" in loaded and "click" not in loaded
    assert "dataclasses" not in loaded          # a quarter of the no-op's time, once


@pytest.mark.integration
def test_a_plain_build_says_a_rulesfile_error_as_click_does(tmp_path):
    root = write_project(tmp_path, """
        rules:
          out: {deps: [missing.txt], command: "cp missing.txt out"}
        """)
    plain, through_click = _plain(root, "build"), _plain(root, "build", "-j", "1")
    assert plain.returncode == through_click.returncode == 2
    assert plain.stderr == through_click.stderr
    assert plain.stderr.startswith("rlmake: error: Rulesfile.yaml:2: rule 'out': ")
    assert "Traceback" not in plain.stderr


@pytest.mark.integration
def test_a_plain_build_stops_on_sigterm_as_on_ctrl_c(tmp_path):
    project = Project(tmp_path / "p")
    project.rules("""
        rules:
          out: {command: "echo $$ > pid; sleep 30; echo done > out"}
    """)
    build = project.start_logged("plain")
    try:
        command = int(project.wait_for_line("pid", timeout=30))
        build.send_signal(signal.SIGTERM)
        assert build.wait(timeout=30) == 130, project.said("plain")
    finally:
        build.kill()
        build.wait()
    assert "rlmake: error: interrupted; unfinished jobs were not recorded" in project.said("plain")
    assert wait_until_dead(command, 10)
    assert not project.exists("out")


@pytest.mark.integration
@pytest.mark.parametrize("args", [["build"], ["build", "-j", "1"]])
def test_a_closed_output_ends_the_build_quietly(tmp_path, args):
    """`rlmake build | head -1` when head has gone: exit 1, as click has it, no traceback."""
    root = write_project(tmp_path, """
        rules:
          out: {deps: [in.txt], command: "cp in.txt out"}
        """, {"in.txt": "x\n"})
    assert _plain(root, "build").returncode == 0
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run([*rlmake_exe(), *args], cwd=root, stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=build_env())
    finally:
        os.close(writer)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
