"""Rulesfile.example.yaml builds for real: a fresh parallel build waits for the generated
greet.h that every object includes (its `order_only`), however slow the generator is."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from buildkit import Project
from checkout import ROOT

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")]

GENERATOR = "    command:\n      - printf '#include \"greet.h\"\\n#include <stdio.h>"


def tour(root, slow_generator: bool) -> Project:
    text = (ROOT / "Rulesfile.example.yaml").read_text()
    assert GENERATOR in text
    if slow_generator:      # the objects are ready to compile long before greet.h exists
        text = text.replace(GENERATOR, GENERATOR.replace("      - printf",
                                                         "      - sleep 1\n      - printf"))
    project = Project(root)
    project.write("Rulesfile.yaml", text)
    return project


@pytest.mark.parametrize("slow_generator", [False, True])
def test_a_fresh_parallel_build_of_the_tour_succeeds(tmp_path, slow_generator):
    project = tour(tmp_path / "tour", slow_generator)
    built = project.build("-j4")
    assert {"greet.c", "hello.o", "bye.o", "greet.o", "hello", "bye"} <= built.ran
    run = subprocess.run(["./hello"], cwd=project.root, capture_output=True, text=True)
    assert run.stdout == "Hello, hello!\n"
    assert project.build("-j4").ran == set()
