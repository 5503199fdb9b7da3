"""Rulesfile.example.yaml, the commented tour of the format, loads and expands as it is."""

from __future__ import annotations

import shutil

import pytest
from checkout import ROOT

from conftest import run_cli


@pytest.mark.parametrize("command", [["build", "-n"], ["list"], ["graph"]])
def test_the_tour_loads_and_expands(tmp_path, command):
    shutil.copy(ROOT / "Rulesfile.example.yaml", tmp_path / "Rulesfile.example.yaml")
    result = run_cli(["-f", "Rulesfile.example.yaml", *command], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert result.stdout
