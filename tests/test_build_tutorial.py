"""The compile tutorial (examples/compile), built for real with gcc, step by step.

Each test copies the example into tmp_path, runs the real `rlmake build -v` (CI=1) and
reads the `Run`/`Miss`/`Cached` lines to see exactly which jobs ran.

Every test runs twice: "fresh" (files as new as the test writes them, rlmake's local
artifact cache off) and "default" (rlmake's default settings, and files aged between
builds as if the user paused, which is what lets rlmake trust stats and take its
no-op fast path). `-v` says `Miss` for a job whose outputs were restored from the cache
as for one that ran.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from buildkit import Project

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compile"
COMPILES = {"prog.o", "prog2.o", "lib.o"}
LINKS = {"prog", "prog2"}
ALL_JOBS = COMPILES | LINKS

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")]


def run(project: Project, program: str) -> str:
    return subprocess.run([f"./{program}"], cwd=project.root, capture_output=True, text=True,
                          check=True, timeout=10).stdout


def copy_example(tmp_path, request) -> Project:
    shutil.copytree(EXAMPLE, tmp_path / "compile", ignore=shutil.ignore_patterns(".rlmake"))
    default = request.param == "default"
    return Project(tmp_path / "compile", aged=default, local_cache=default)


VARIANTS = pytest.fixture(params=["fresh", "default"])


@VARIANTS
def example(tmp_path, request) -> Project:
    """A copy of examples/compile, not built yet."""
    project = copy_example(tmp_path, request)
    for leftover in ("prog", "prog2", "prog.o", "prog2.o", "lib.o"):
        (project.root / leftover).unlink(missing_ok=True)
    return project


@pytest.fixture
def tutorial(example) -> Project:
    """A copy of examples/compile, built once from scratch."""
    project = example
    first = project.build()
    assert first.ran == ALL_JOBS, first.describe()
    assert first.cached == set(), first.describe()
    return project


def test_first_build_runs_three_compiles_and_two_links(tutorial):
    # The fixture made the first build; check its products.
    for path in ALL_JOBS:
        assert tutorial.exists(path), path
    assert run(tutorial, "prog") == "Hello, prog!\n"
    assert run(tutorial, "prog2") == "Hello, prog2!\n"


def test_first_build_plain_progress_lines(example):
    project = example
    result = project.build()
    progress = sorted(line.split("] ", 1)[1] for line in result.lines if line.startswith("["))
    assert progress == sorted(["gcc -c prog.c", "gcc -c prog2.c", "gcc -c lib.c",
                               "gcc -o prog prog.o lib.o", "gcc -o prog2 prog2.o lib.o"]), \
        result.describe()
    counters = [line.split("]", 1)[0] + "]" for line in result.lines if line.startswith("[")]
    assert counters[-1] == "[5/5]", result.describe()


def test_second_build_runs_nothing(tutorial):
    second = tutorial.build()
    assert second.ran == set(), second.describe()
    assert second.cached == ALL_JOBS, second.describe()
    assert not any(line.startswith("[") for line in second.lines), second.describe()


def test_changing_lib_c_relinks_both_programs(tutorial):
    tutorial.noop()
    source = tutorial.read("lib.c")
    assert "Hello" in source
    tutorial.write("lib.c", source.replace("Hello", "Goodbye"))
    result = tutorial.build()
    assert result.ran == {"lib.o", "prog", "prog2"}, result.describe()
    assert result.cached == {"prog.o", "prog2.o"}, result.describe()
    assert run(tutorial, "prog") == "Goodbye, prog!\n"
    assert run(tutorial, "prog2") == "Goodbye, prog2!\n"
    tutorial.noop()


def test_reverting_lib_c_brings_back_the_first_build(tutorial):
    source = tutorial.read("lib.c")
    tutorial.write("lib.c", source.replace("Hello", "Goodbye"))
    tutorial.build()
    tutorial.noop()
    tutorial.write("lib.c", source)
    result = tutorial.build()
    assert result.ran == {"lib.o", "prog", "prog2"}, result.describe()
    # with the default local cache the three jobs' first results come back unrun
    restored = result.stdout.count("restored")
    assert restored == (3 if tutorial.local_cache else 0), result.describe()
    assert run(tutorial, "prog") == "Hello, prog!\n"
    assert run(tutorial, "prog2") == "Hello, prog2!\n"
    tutorial.noop()


def test_rm_prog_reruns_only_its_link(tutorial):
    tutorial.noop()
    (tutorial.root / "prog").unlink()
    result = tutorial.build()
    assert result.ran == {"prog"}, result.describe()
    assert result.cached == ALL_JOBS - {"prog"}, result.describe()
    assert "output prog is missing" in result.stdout
    assert run(tutorial, "prog") == "Hello, prog!\n"
    tutorial.noop()


def test_touch_prog_c_reruns_nothing(tutorial):
    tutorial.noop()
    tutorial.touch_later("prog.c")
    result = tutorial.build()
    assert result.ran == set(), result.describe()
    assert result.cached == ALL_JOBS, result.describe()
    # and the new stat is remembered: still nothing the time after
    tutorial.noop()


def test_building_one_target_builds_only_what_it_needs(example):
    project = example
    result = project.build("prog")
    assert result.ran == {"prog", "prog.o", "lib.o"}, result.describe()
    assert not project.exists("prog2.o")
    rest = project.build()
    assert rest.ran == {"prog2", "prog2.o"}, rest.describe()
    assert rest.cached == {"prog", "prog.o", "lib.o"}, rest.describe()


DEPFILE_RULES = """
rules:
  all:
    deps: [prog, prog2]
  prog:
    deps: [prog.o, lib.o]
    command: gcc -o prog prog.o lib.o
  prog2:
    deps: [prog2.o, lib.o]
    command: gcc -o prog2 prog2.o lib.o
  prog.o:
    deps: [prog.c]
    command: "gcc -MMD -MF {{ target }}.d -c prog.c"
    depfile: "{{ target }}.d"
  prog2.o:
    deps: [prog2.c]
    command: gcc -c prog2.c
  lib.o:
    deps: [lib.c]
    command: gcc -c lib.c
"""

PROG_C_WITH_HEADER = """\
#include "name.h"
void print_message(const char *name);

int main(void) {
    print_message(PROG_NAME);
    return 0;
}
"""


def test_header_edit_recompiles_only_the_object_that_includes_it(example):
    project = example
    project.rules(DEPFILE_RULES)
    project.write("prog.c", PROG_C_WITH_HEADER)
    project.write("name.h", '#define PROG_NAME "prog"\n')
    first = project.build()
    assert first.ran == ALL_JOBS, first.describe()
    assert project.exists("prog.o.d")
    assert run(project, "prog") == "Hello, prog!\n"
    project.noop()

    project.write("name.h", '#define PROG_NAME "header"\n')
    result = project.build()
    compiles = result.ran & COMPILES
    assert compiles == {"prog.o"}, result.describe()
    assert result.ran == {"prog.o", "prog"}, result.describe()   # prog.o's bytes changed
    assert "name.h" in result.stdout, result.describe()          # the reason names the header
    assert run(project, "prog") == "Hello, header!\n"
    assert run(project, "prog2") == "Hello, prog2!\n"
    project.noop()


def test_header_touched_without_change_recompiles_nothing(example):
    project = example
    project.rules(DEPFILE_RULES)
    project.write("prog.c", PROG_C_WITH_HEADER)
    project.write("name.h", '#define PROG_NAME "prog"\n')
    project.build()
    project.noop()
    project.touch_later("name.h")
    project.noop()


def test_deleted_header_reruns_the_job_without_error(example):
    project = example
    project.rules(DEPFILE_RULES)
    project.write("prog.c", PROG_C_WITH_HEADER)
    project.write("name.h", '#define PROG_NAME "prog"\n')
    project.build()
    project.noop()
    # prog.c stops including the header, then the header goes away
    project.write("prog.c", PROG_C_WITH_HEADER.replace('#include "name.h"\n',
                                                       '#define PROG_NAME "solo"\n'))
    (project.root / "name.h").unlink()
    result = project.build()
    assert "prog.o" in result.ran, result.describe()
    assert run(project, "prog") == "Hello, solo!\n"
    project.noop()
