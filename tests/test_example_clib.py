"""examples/clib through the real CLI: a fresh parallel build (the objects wait for the
generated version.h through order-only deps), the programs it makes, no-op, header and
VERSION edits that recompile only the objects that include them, and clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from buildkit import Project
from checkout import ROOT

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")]

EXAMPLE = ROOT / "examples" / "clib"
GENERATED = "build/gen/version.h"
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


@pytest.fixture
def clib(tmp_path) -> Project:
    root = tmp_path / "clib"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".rlmake", "build", "lib",
                                                                 "bin"))
    return Project(root, aged=True)


def files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")
            if path.is_file() and ".rlmake" not in path.relative_to(root).parts}


def objects_including(root: Path, header: str) -> set[str]:
    """The objects whose source includes `header` (a file name), directly or through the
    project's own headers, read from the sources as a compiler would."""
    includes = {path: {Path(name).name for name in _INCLUDE.findall(path.read_text())}
                for path in root.rglob("*.[ch]") if "build" not in path.parts}
    reaching = {header}
    while True:
        more = {path.name for path, names in includes.items()
                if path.suffix == ".h" and names & reaching} - reaching
        if not more:
            break
        reaching |= more
    return {"build/" + str(path.relative_to(root).with_suffix(".o"))
            for path, names in includes.items() if path.suffix == ".c" and names & reaching}


def run(project: Project, *command: str, stdin: str = "") -> str:
    done = subprocess.run(command, cwd=project.root, input=stdin, capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_clib_example(clib):
    sources = files(clib.root)
    all_objects = {"build/" + str(Path(path).with_suffix(".o")) for path in sources
                   if path.endswith(".c")}

    # a fresh -j4 build: no compile starts before the generated header is written
    fresh = clib.build("-j4")
    assert fresh.ran == {GENERATED, *all_objects, "lib/libstr.a", "lib/libhash.a",
                         "lib/liblist.a", "bin/wordfreq", "bin/clib_check"}
    written = next(i for i, line in enumerate(fresh.lines) if line.endswith(f"GEN {GENERATED}"))
    first_compile = min(i for i, line in enumerate(fresh.lines) if line.startswith("Run    build/")
                        and line.split(":")[0].endswith(".o"))
    assert written < first_compile, fresh.describe()

    assert run(clib, "./bin/clib_check") == "all checks passed (clib 1.4.0)\n"
    assert run(clib, "./bin/wordfreq", "-n", "2", stdin="The cat saw the hat; THE end.\n") \
        == "3 the\n1 cat\n"
    assert run(clib, "./bin/wordfreq", "--version") == "wordfreq 1.4.0 (clib 1.4.0)\n"
    clib.noop("-j4")

    # a comment edited in a header: only its includers recompile, to the same bytes
    header = clib.root / "include/clib/list.h"
    header.write_text(header.read_text().replace("that can be sorted", "that sorts"))
    edited = clib.build("-j4")
    includers = objects_including(clib.root, "list.h")
    assert {"build/src/list/sort.o", "build/tools/wordfreq/main.o"} <= includers < all_objects
    assert edited.ran == includers, edited.describe()      # nothing relinks

    # a new VERSION: the header is generated again, and only its includers recompile
    (clib.root / "VERSION").write_text("1.5.0\n")
    bumped = clib.build("-j4")
    includers = objects_including(clib.root, "version.h")
    assert includers == {"build/src/str/version.o", "build/tools/wordfreq/main.o",
                         "build/check/main.o"}
    assert {target for target in bumped.ran if target.endswith(".o")} == includers
    assert bumped.ran - includers == {GENERATED, "lib/libstr.a", "bin/wordfreq",
                                      "bin/clib_check"}
    assert run(clib, "./bin/wordfreq", "--version") == "wordfreq 1.5.0 (clib 1.5.0)\n"
    assert run(clib, "./bin/clib_check") == "all checks passed (clib 1.5.0)\n"
    clib.noop("-j4")

    # clean leaves the sources, as they were (VERSION edited), and nothing else
    clib.cli("clean")
    assert files(clib.root) == sources
