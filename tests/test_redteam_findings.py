"""Problems found by trying to break rlmake as a hostile user, each kept from coming back."""

from __future__ import annotations

import os
import signal

import pytest
from engine import Engine
from fakes import FakeExecutor

from rlmake import jobfiles
from rlmake.errors import StateError


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


# --- an input edited while its job waits in the queue ----------------------------------

QUEUED = """\
rules:
  all: {phony: true, deps: [a.txt, b.txt]}
  a.txt: {command: echo a > a.txt}
  b.txt: {deps: [in.txt], command: cp in.txt b.txt}
"""


def test_an_input_edited_while_its_job_waits_to_start_is_not_recorded(engine):
    """b.txt is decided (in.txt hashed) at once but waits behind a.txt under -j1; in.txt
    is edited meanwhile. b.txt then copies the new bytes: recorded under the old digest,
    reverting in.txt would leave the new bytes taken as up to date."""
    engine.write("Rulesfile.yaml", QUEUED)
    engine.write("in.txt", "old\n")
    executor = FakeExecutor(engine.clock,
                            during={"a.txt": lambda task: engine.write("in.txt", "new\n")})
    built = engine.build(executor=executor, jobs=1, keep_going=True)
    assert built.ran == ["a.txt", "b.txt"]
    assert built.status == "failed"
    assert "input 'in.txt' changed while the command ran" in built.outcomes["b.txt"].error
    engine.write("in.txt", "old\n")
    engine.build(jobs=1)
    assert engine.read("b.txt") == "old\n"


def test_a_job_that_waited_with_its_inputs_untouched_still_counts(engine):
    engine.write("Rulesfile.yaml", QUEUED)
    engine.write("in.txt", "old\n")
    built = engine.build(jobs=1)
    assert built.status == "ok" and built.ran == ["a.txt", "b.txt"]
    assert engine.build(jobs=1).ran == []


# --- a damaged record of running commands ----------------------------------------------

def test_a_running_log_of_garbage_bytes_is_skipped(engine):
    engine.write("Rulesfile.yaml", "rules:\n  out: {command: echo hi > out}\n")
    running = engine.root / ".rlmake" / "running"
    running.parent.mkdir()
    running.write_bytes(b"\xfe\xff+12 \x00\n+99999999999999999999 1 2\n+1 0 99999999999\n=\xe9\n")
    built = engine.build()
    assert built.status == "ok" and built.ran == ["out"]
    assert not running.exists()


def test_a_running_log_that_is_a_directory_is_a_clear_error(engine):
    engine.write("Rulesfile.yaml", "rules:\n  out: {command: echo hi > out}\n")
    (engine.root / ".rlmake" / "running").mkdir(parents=True)
    with pytest.raises(StateError, match=r"running: Is a directory; it is a directory"):
        engine.build()
    assert (engine.root / ".rlmake" / "running").is_dir()


# --- a depfile that is not a regular file -----------------------------------------------

def test_a_depfile_left_as_a_fifo_fails_the_job_without_waiting(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  out.txt: {deps: [in.txt], depfile: out.d, command: [cp in.txt out.txt, "true"]}
""")
    engine.write("in.txt", "a\n")
    executor = FakeExecutor(engine.clock,
                            during={"out.txt": lambda task: os.mkfifo(engine.root / "out.d")})
    built = engine.build(executor=executor)
    assert built.status == "failed"
    assert built.outcomes["out.txt"].error == (
        "cannot read its depfile 'out.d': not a regular file (a directory, FIFO, socket or "
        "device)")
    assert not (engine.root / "out.txt").exists()


def test_a_depfile_left_as_a_directory_fails_the_job(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  out.txt: {deps: [in.txt], depfile: out.d, command: mkdir -p out.d && cp in.txt out.txt}
""")
    engine.write("in.txt", "a\n")
    built = engine.build()
    assert built.status == "failed"
    assert "cannot read its depfile 'out.d': not a regular file" in built.outcomes["out.txt"].error
    assert (engine.root / "out.d").is_dir()


# --- a FIFO in a cache store ------------------------------------------------------------

@pytest.fixture
def deadline():
    """Fail, instead of hanging the test run, if the build blocks for 10 seconds."""
    def expire(signum, frame):
        raise TimeoutError("the build blocked")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["cas", "ac"])
def test_a_fifo_in_a_directory_store_is_refused_without_waiting(engine, deadline, kind,
                                                                  tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("RLMAKE_CACHE", str(shared))
    monkeypatch.setenv("RLMAKE_CACHE_WRITE", "1")
    engine.write("Rulesfile.yaml", "rules:\n  out: {deps: [in.txt], command: cp in.txt out}\n")
    engine.write("in.txt", "a\n")
    assert engine.build().ran == ["out"]
    (entry,) = (path for path in (shared / kind).rglob("*") if path.is_file())
    entry.unlink()
    os.mkfifo(entry)
    (engine.root / "out").unlink()
    built = engine.build()
    assert built.status == "ok" and built.ran == ["out"] and engine.read("out") == "a\n"
    assert any("not a regular file" in warning for warning in built.warnings)


# --- a full disk while the state database is made ---------------------------------------

def test_a_full_disk_while_the_database_is_made_says_so(tmp_path, monkeypatch):
    """SQLite rolls the migration back itself on SQLITE_FULL; rlmake's own ROLLBACK then
    failed with 'no transaction is active', and that error hid the one to act on."""
    import sqlite3

    from rlmake import state

    connect = sqlite3.connect

    def connect_to_a_full_disk(*args, **kwargs):
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA max_page_count = 2")       # as good as a full disk
        return connection
    monkeypatch.setattr(state.sqlite3, "connect", connect_to_a_full_disk)
    with pytest.raises(StateError, match="database or disk is full; the disk is full"):
        state.StateDB(str(tmp_path / ".rlmake"))


def test_an_error_after_which_sqlite_rolled_back_itself_is_not_hidden(tmp_path, monkeypatch):
    """On a real full disk SQLite ends the transaction itself (as it may for SQLITE_FULL
    and I/O errors); rlmake's ROLLBACK then failed and its error was the one shown."""
    import sqlite3

    from rlmake import state

    def fail_as_a_full_disk_does(conn, path, schema, number, found):
        conn.execute("ROLLBACK")            # what SQLite did on its own
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise error
    monkeypatch.setattr(state, "_apply_migration", fail_as_a_full_disk_does)
    with pytest.raises(StateError, match="database or disk is full; the disk is full"):
        state.StateDB(str(tmp_path / ".rlmake"))


# --- the record of running commands on a full disk --------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_the_running_log_does_not_stop_the_build(tmp_path):
    """Every write to /dev/full fails with ENOSPC, as on a full disk: the log of running
    commands used to raise out of the executor's wait, past the cancel, leaving the
    build's commands running and the user a traceback."""
    from rlmake.executors.leftovers import CommandRecord

    record = CommandRecord(str(tmp_path))
    os.symlink("/dev/full", record.path)
    since = record.clock("job")
    record.started(os.getpid(), since)
    record.ended(os.getpid())
    record.flush()
    record.close()
    assert not os.path.lexists(record.path)


# --- a header its depfile lists for the first time, edited while the job runs -----------

def test_a_first_time_depfile_dep_edited_while_its_job_runs_fails_the_job(engine, monkeypatch):
    """The header was never hashed before the job (no depfile yet), so it was hashed after:
    the edit's bytes were recorded against an output made from the old ones, and an edit
    that kept the size and put the mtime back left that wrong output up to date for good."""
    engine.write("Rulesfile.yaml", """\
rules:
  out:
    deps: [in.txt]
    depfile: out.d
    command: ["cat in.txt h.h > out", "echo 'out: in.txt h.h' > out.d"]
""")
    engine.write("in.txt", "in\n")
    engine.write("h.h", "header\n")

    def edit_keeping_size_and_mtime(task):
        header = engine.root / "h.h"
        before = header.stat()
        header.write_text("beader\n")
        os.utime(header, ns=(before.st_atime_ns, before.st_mtime_ns))
    executor = FakeExecutor(engine.clock, during={"out": edit_keeping_size_and_mtime})
    built = engine.build(executor=executor)
    assert built.status == "failed"
    assert "'h.h', which its depfile lists, changed while the command ran" in \
        built.outcomes["out"].error
    assert not (engine.root / "out").exists()
    # The next build may start within a coarse clock tick of that edit, and a depfile's
    # first listing changed then counts as changed while the job ran: the user's next
    # build comes later. Only a ctime after the job's start counts from here on.
    monkeypatch.setattr(jobfiles, "_TICK_NS", 0)
    assert engine.build().ran == ["out"] and engine.read("out") == "in\nbeader\n"
    assert engine.build().ran == []
