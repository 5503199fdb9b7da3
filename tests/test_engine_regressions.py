"""Counterexamples the model check (test_model_check.py) found, kept as plain tests."""

from __future__ import annotations

import pytest
from engine import Engine

from rlmake.model import ReasonKind, Status


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


def test_a_dry_run_sees_a_rebuild_through_an_aggregate(engine):
    """-n must count a job whose dep is an aggregate over a job that would run: the real
    build reruns it once the aggregate's content changes."""
    rulesfile = """\
rules:
  out:
    deps: [group]
    command: cat a.o > out
  group:
    deps: [a.o]
  "%.o":
    deps: ["%.c"]
    command: echo VERSION > {{ target }}
"""
    engine.write("Rulesfile.yaml", rulesfile.replace("VERSION", "one"))
    engine.write("a.c", "a\n")
    assert engine.build().ran == ["a.o", "out"]
    engine.write("Rulesfile.yaml", rulesfile.replace("VERSION", "two"))
    dry = engine.build(dry_run=True)
    assert dry.of(Status.WOULD_RUN) == {"a.o", "out"}
    assert [r.kind for r in dry.outcomes["out"].decision.reasons] == [ReasonKind.DEP_WILL_CHANGE]
    assert engine.build().ran == ["a.o", "out"]



def test_a_stored_entry_made_with_another_header_is_refused(engine):
    """One key can name results of other headers (a key leaves out what the depfile
    lists): the store's entry must not be restored once its header reads differently."""
    engine.write("Rulesfile.yaml", """\
rules:
  t2:
    deps: [a.c]
    depfile: t2.d
    command: "cat a.c h1.h > t2; echo 't2: h1.h' > t2.d"
""")
    engine.write("a.c", "a\n")
    engine.write("h1.h", "old\n")
    assert engine.build(local_cache=True).ran == ["t2"]          # stored, with h1.h "old"
    engine.write("h1.h", "new\n")
    assert engine.build().ran == ["t2"]                         # rebuilt, not stored
    (engine.root / "t2").unlink()
    built = engine.build(local_cache=True)
    assert built.ran == ["t2"] and not built.of(Status.RESTORED)
    assert engine.read("t2") == "a\nnew\n"
