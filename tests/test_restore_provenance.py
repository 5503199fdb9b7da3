"""Where a restored job's bytes came from: an action record says which build stored it
(execution, host, time, rlmake version), the run records it, and `why` and `log` say it.

The first half builds in-process (engine.py) with the real local store; the second runs
the CLI on real projects, one of them restoring from a directory store another copy of
the project wrote."""

from __future__ import annotations

import shutil
import socket

import pytest
from buildkit import Project
from engine import Engine
from storekit import only_record, rewrite_record

from rlmake import __version__
from rlmake.model import Status, StoredBy
from rlmake.project import Project as RlmakeProject

RULES = "rules:\n  out: {deps: [in.txt], command: cp in.txt out}\n"
LOGGED = "rules:\n  out: {deps: [in.txt], command: cp in.txt out && echo ran >> ran.log}\n"


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path / "proj")
    engine.write("Rulesfile.yaml", RULES)
    engine.write("in.txt", "a\n")
    return engine


def executions(engine: Engine) -> list[str]:
    with RlmakeProject(str(engine.root)).records() as state:
        return [execution.id for execution in reversed(state.executions())]


def last_run(engine: Engine):
    with RlmakeProject(str(engine.root)).records() as state:
        return state.last_run("out")


def restore_again(engine: Engine):
    (engine.root / "out").unlink()
    built = engine.build(local_cache=True)
    assert built.ran == [] and engine.read("out") == "a\n", built
    return built


# --- in-process: the record, the restore and the run ----------------------------------

def test_a_restored_run_records_the_build_that_stored_it(engine):
    assert engine.build(local_cache=True).ran == ["out"]
    [stored_by_build] = executions(engine)
    built = restore_again(engine)
    assert built.of(Status.RESTORED) == {"out"}
    run = last_run(engine)
    assert run.status is Status.RESTORED and run.execution != stored_by_build
    assert run.stored_by == StoredBy(stored_by_build, socket.gethostname(), run.stored_by.time,
                                     __version__)
    _, record = only_record(engine.root / ".rlmake" / "cache")
    assert record["stored_by"] == {"execution": stored_by_build, "host": socket.gethostname(),
                                   "version": __version__}
    assert run.stored_by.time == record["created"]


def test_a_record_from_before_stored_by_is_still_restored(engine):
    engine.build(local_cache=True)
    rewrite_record(engine.root / ".rlmake" / "cache", lambda record: record.pop("stored_by"))
    restore_again(engine)
    assert last_run(engine).stored_by is None


@pytest.mark.parametrize("change", [
    lambda r: r.__setitem__("stored_by", "ci-7"),
    lambda r: r.__setitem__("stored_by", None),
    lambda r: r["stored_by"].__setitem__("host", 7),
    lambda r: r["stored_by"].__setitem__("execution", ["3fa2c1d9"]),
    lambda r: r["stored_by"].pop("version"),
    lambda r: r["stored_by"].__setitem__("extra", "x"),
    lambda r: r["stored_by"].__setitem__("host", "h" * 256),
    lambda r: r.__setitem__("created", "yesterday"),
    lambda r: r.__setitem__("created", True),
    lambda r: r.pop("created"),
], ids=["not-a-mapping", "null", "host-number", "execution-list", "no-version", "extra-key",
        "long-host", "created-text", "created-bool", "no-created"])
def test_a_stored_by_of_the_wrong_shape_is_refused(engine, change):
    engine.build(local_cache=True)
    rewrite_record(engine.root / ".rlmake" / "cache", change)
    (engine.root / "out").unlink()
    built = engine.build(local_cache=True)
    assert built.ran == ["out"], built                  # refused: the job ran instead
    assert any("malformed" in warning for warning in built.warnings), built.warnings


def test_stored_by_is_shown_terminal_safe_and_on_one_line(engine):
    engine.build(local_cache=True)
    rewrite_record(engine.root / ".rlmake" / "cache", lambda record: record["stored_by"].update(
        host="ci\x1b]0;owned\x07\nfake line", version="0.1\t\x9b2J"))
    restore_again(engine)
    stored_by = last_run(engine).stored_by
    assert stored_by.host == "ci\\x1b]0;owned\\x07\\x0afake line"
    assert stored_by.version == "0.1\\x09\\x9b2J"


def test_stored_by_is_signed_with_the_rest(engine, monkeypatch):
    monkeypatch.setenv("RLMAKE_CACHE_KEY", "sesame")
    engine.build(local_cache=True)
    rewrite_record(engine.root / ".rlmake" / "cache",
                   lambda record: record["stored_by"].update(host="someone-else"))
    (engine.root / "out").unlink()
    built = engine.build(local_cache=True)
    assert built.ran == ["out"], built
    assert any("signature" in warning for warning in built.warnings), built.warnings


# --- end to end: why and log ------------------------------------------------------------

def first_execution(project: Project) -> str:
    return project.db().execute("SELECT id FROM executions ORDER BY started LIMIT 1").fetchone()[0]


def said_everywhere(project: Project, *texts: str) -> None:
    """`why out`, `log -` and `log out` each say every one of `texts`."""
    for argv in (["why", "out"], ["log", "-"], ["log", "out"]):
        result = project.cli(*argv)
        for text in texts:
            assert text in result.stdout, (argv, result.describe())


@pytest.mark.integration
def test_why_and_log_name_the_local_build_that_stored_it_and_why_it_ran(cached_proj):
    proj = cached_proj
    proj.rules(LOGGED)
    proj.write("in.txt", "a\n")
    proj.build()
    proj.write("in.txt", "b\n")
    proj.build()
    assert proj.take_log() == ["ran", "ran"]
    stored_by = proj.db().execute(
        "SELECT id FROM executions ORDER BY started DESC LIMIT 1").fetchone()[0]
    proj.write("in.txt", "a\n")
    proj.build()                            # back to "a": restored, stored by the first
    assert proj.take_log() == []
    said_everywhere(proj, f"restored from local cache: stored by execution {first_execution(proj)}"
                    f" on host {socket.gethostname()} at ", f"(rlmake {__version__})",
                    "it ran then because: never built")
    proj.write("in.txt", "b\n")
    proj.build()                            # restored, stored by the second: in.txt changed
    assert proj.take_log() == []
    said_everywhere(proj, f"stored by execution {stored_by} ",
                    "it ran then because: in.txt changed")


@pytest.mark.integration
def test_a_shared_store_written_by_another_copy_names_a_build_not_on_record(tmp_path):
    store = tmp_path / "store"
    writer = Project(tmp_path / "writer")
    writer.rules(LOGGED)
    writer.write("in.txt", "a\n")
    writer.build("--cache", store, "--cache-write")
    assert writer.take_log() == ["ran"]
    stored_by = first_execution(writer)
    reader = Project(tmp_path / "reader")
    shutil.copy(writer.root / "Rulesfile.yaml", reader.root)
    shutil.copy(writer.root / "in.txt", reader.root)
    reader.build("--cache", store)
    assert reader.take_log() == [] and reader.read("out") == "a\n"
    said_everywhere(reader, f"restored from {store}: stored by execution {stored_by} on host ",
                    f"execution {stored_by} is not in this project's records")


@pytest.mark.integration
def test_a_record_without_stored_by_says_an_unknown_build(tmp_path):
    store = tmp_path / "store"
    writer = Project(tmp_path / "writer")
    writer.rules(LOGGED)
    writer.write("in.txt", "a\n")
    writer.build("--cache", store, "--cache-write")
    assert writer.take_log() == ["ran"]
    rewrite_record(store, lambda record: record.pop("stored_by"))
    (writer.root / "out").unlink()
    writer.build("--cache", store)
    assert writer.take_log() == [] and writer.read("out") == "a\n"
    said_everywhere(writer, f"restored from {store}: stored by an unknown build")
