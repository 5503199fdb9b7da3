"""A dry run decides a job never built without reading its deps.

Nothing runs, is stored or is looked up in a dry run, so a job with no record needs no
key: it is stale, for the one reason `decide` would give. Its deps are looked at (a
missing one, a FIFO) but not read: a fresh tree's `build -n` reads no source.
"""

from __future__ import annotations

import os

import pytest

from conftest import build_n, run_cli, write_project
from rlmake import hashing

RULES = """
    rules:
      "obj/%.o": {deps: ["src/%.c"], command: "cp {{ dep }} {{ target }}"}
      lib.a: {deps: [obj/a.o, obj/b.o], command: "cat {{ deps | join(' ') }} > {{ target }}"}
      all: {deps: [lib.a]}
    default: all
"""
SOURCES = {"src/a.c": "a\n", "src/b.c": "b\n"}


@pytest.fixture
def no_reading(monkeypatch):
    """Reading a dep (through the build's hasher) fails the test."""
    def refuse(hasher, path, full, stat):
        raise AssertionError(f"a dry run read {path}")

    monkeypatch.setattr(hashing.FileHasher, "_rehash", refuse)


def test_a_fresh_dry_run_reads_no_source(tmp_path, no_reading):
    project = write_project(tmp_path, RULES, SOURCES)
    assert sorted(build_n(project)) == ["cat obj/a.o obj/b.o > lib.a",
                                        "cp src/a.c obj/a.o", "cp src/b.c obj/b.o"]
    result = run_cli(["why", "lib.a"], project)
    assert result.exit_code == 0, result.describe()
    assert "will be rebuilt because it was never built" in result.stdout


def test_a_dry_run_still_refuses_a_fifo(tmp_path, no_reading):
    """As before it skipped reading: the job fails before it would run, saying why."""
    project = write_project(tmp_path, """
        rules:
          out: {deps: [pipe], command: "cat pipe > out"}
    """)
    os.mkfifo(project / "pipe")
    result = run_cli(["build", "-n"], project)
    assert "FAILED: out\n  cannot read 'pipe': not a regular file" in result.stderr, \
        result.describe()


def test_a_job_built_before_is_still_keyed_in_a_dry_run(tmp_path):
    """Only a job with no record skips its key: one with a record is compared as always."""
    project = write_project(tmp_path, """
        rules:
          out: {deps: [src], command: "cp src out"}
    """, {"src": "1\n"})
    assert run_cli(["build"], project).exit_code == 0
    assert run_cli(["build", "-n"], project).stdout == ""
    (project / "src").write_text("2\n")
    assert build_n(project) == ["cp src out"]
    result = run_cli(["why", "out"], project)
    assert "src changed" in result.stdout, result.describe()
