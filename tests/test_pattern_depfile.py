"""In a pattern rule's depfile, `%` stands for the stem, as in its deps and outputs: a
make user writes `depfile: "%.d"` for `"%.o"`, and the file gcc -MF writes is found."""

from __future__ import annotations

import json
import shlex

import pytest
from engine import Engine

from conftest import run_subprocess, write_project
from rlmake.model import ReasonKind, Status

PATTERN = """\
rules:
  "obj/%.o":
    deps: ["src/%.c"]
    command: "cat src/common.h {{ dep }} > {{ target }}; echo '{{ target }}: src/common.h' > dep/{{ stem }}.d"
    depfile: DEPFILE
"""


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


def project(engine: Engine, depfile: str) -> Engine:
    engine.write("Rulesfile.yaml", PATTERN.replace("DEPFILE", depfile))
    engine.write("src/main.c", "main\n")
    engine.write("src/common.h", "1\n")
    return engine


@pytest.mark.parametrize("depfile", ["dep/%.d", "dep/{{ stem }}.d"])
def test_the_stem_names_the_depfile_and_what_it_lists_reruns_the_job(engine, depfile):
    project(engine, depfile)
    built = engine.build("obj/main.o")
    assert built.ran == ["obj/main.o"]
    assert engine.read("dep/main.d") == "obj/main.o: src/common.h\n"
    assert engine.build("obj/main.o").ran == []
    engine.write("src/common.h", "2\n")
    built = engine.build("obj/main.o")
    assert built.ran == ["obj/main.o"]
    assert [r.kind for r in built.outcomes["obj/main.o"].decision.reasons] \
        == [ReasonKind.DEPFILE_DEP_CHANGED]
    assert engine.read("obj/main.o") == "2\nmain\n"


def test_each_stem_gets_its_own_depfile(engine):
    project(engine, "dep/%.d")
    engine.write("src/util.c", "util\n")
    both = ("obj/main.o", "obj/util.o")
    assert engine.build(*both).of(Status.DONE) == set(both)
    assert engine.read("dep/util.d") == "obj/util.o: src/common.h\n"
    assert engine.build(*both).ran == []
    engine.write("src/common.h", "2\n")
    assert engine.build(*both).of(Status.DONE) == set(both)


@pytest.mark.integration
def test_a_percent_depfile_end_to_end(tmp_path):
    """Through the real CLI: the build writes dep/main.d, an edit of the header it lists
    rebuilds the object, and `why` names the header."""
    write_project(tmp_path, PATTERN.replace("DEPFILE", "dep/%.d"),
                  {"src/main.c": "main\n", "src/common.h": "1\n"})
    built = run_subprocess(["build", "obj/main.o"], tmp_path)
    assert built.exit_code == 0, built.describe()
    assert (tmp_path / "dep/main.d").read_text() == "obj/main.o: src/common.h\n"
    assert not (tmp_path / "dep/%.d").exists()
    (tmp_path / "src/common.h").write_text("2\n")
    why = run_subprocess(["why", "obj/main.o"], tmp_path)
    assert why.exit_code == 0, why.describe()
    assert "src/common.h" in why.stdout, why.describe()
    rebuilt = run_subprocess(["build", "obj/main.o"], tmp_path)
    assert rebuilt.exit_code == 0, rebuilt.describe()
    assert (tmp_path / "obj/main.o").read_text() == "2\nmain\n"


# --- only a `%` written in the depfile's text is the stem ---------------------------------

TARGET_D = """\
vars:
  pct: "%"
rules:
  "%.o":
    deps: ["%.c"]
    command: "cat {{ dep | quote }} > {{ target | quote }}; echo 'x:' > WRITTEN"
    depfile: DEPFILE
"""


@pytest.mark.parametrize("target, depfile, written", [
    ("my%20file.o", "{{ target }}.d", "my%20file.o.d"),     # % from the target's name
    ("main.o", "vd/{{ pct }}{{ stem }}.d", "vd/%main.d"),   # % from a variable
    ("main.o", "vd/{{ '%' }}%.d", "vd/%main.d"),            # a literal % and the stem
    ("main.o", "{% raw %}vd/%.d{% endraw %}", "vd/%.d"),    # raw text is literal
    ("main.o", 'vd/{{ "}}" ~ "%" }}.d', "vd/}}%.d"),        # inside a tag, as Jinja reads it
    ("main.o", "vd/{# 50% #}%.d", "vd/main.d"),             # inside a comment
])
def test_a_percent_that_is_not_written_in_the_text_stays(engine, target, depfile, written):
    engine.write("Rulesfile.yaml", TARGET_D.replace("DEPFILE", json.dumps(depfile)).replace(
        "WRITTEN", shlex.quote(written)))
    engine.write(target.replace(".o", ".c"), "c\n")
    built = engine.build(target)
    assert built.of(Status.DONE) == {target}, built.outcomes[target].error
    assert engine.read(written) == "x:\n"
    assert engine.build(target).ran == []


@pytest.mark.integration
def test_a_depfile_in_the_state_directory_is_refused(tmp_path):
    write_project(tmp_path, PATTERN.replace("DEPFILE", ".rlmake/%.d"),
                  {"src/main.c": "main\n", "src/common.h": "1\n"})
    built = run_subprocess(["build", "obj/main.o"], tmp_path)
    assert built.exit_code == 2, built.describe()
    assert "Rulesfile.yaml:" in built.stderr, built.describe()
    assert "depfile '.rlmake/main.d' is in .rlmake/" in built.stderr, built.describe()
    assert "Traceback" not in built.stderr
    assert not (tmp_path / "obj/main.o").exists()
