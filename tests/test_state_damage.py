"""A state database that is damaged, tampered with or raced for gives a clear error (exit 2),
never a traceback and never lost records.

The in-process tests open rlmake.state.StateDB directly; the integration test runs every
command that reads the records through the real CLI.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading

import pytest

from buildkit import build_env, rlmake_exe
from rlmake.errors import StateError
from rlmake.model import ExecutionStatus, JobInputs, RunRecord, Status
from rlmake.state import SCHEMA_VERSION, StateDB


NO_INPUTS = JobInputs((), {}, (), (), {}, {})


def _record_one_build(state_dir: str) -> None:
    state = StateDB(state_dir)
    state.start_execution("e1", 1.0, ["rlmake", "build"])
    inputs = JobInputs(("true",), {}, ("out.txt",), (), {}, {})
    state.record_run(RunRecord("e1", "out.txt", "out.txt", "k" * 64, Status.DONE, (), 1.0, 2.0, 0,
                               inputs, writes=(("out.txt", "d" * 64),)))
    state.finish_execution("e1", 2.0, ExecutionStatus.SUCCEEDED, 1, 0, 0)
    state.close()


def _damage_pages(state_dir: str) -> str:
    """Garbage over every page but the first: the header (schema version) still reads, so the
    database opens, and the first query of a table fails."""
    path = os.path.join(state_dir, "state.db")
    size = os.path.getsize(path)
    page = 4096
    assert size > page, "the database should have more than its first page"
    with open(path, "r+b") as stream:
        stream.seek(page)
        stream.write(b"\xa5" * (size - page))
    return path


def test_a_damaged_page_found_after_opening_is_a_clear_error(tmp_path):
    state_dir = str(tmp_path / ".rlmake")
    _record_one_build(state_dir)
    path = _damage_pages(state_dir)
    state = StateDB(state_dir)              # the header is intact: opening succeeds
    queries = [state.executions, state.cache_totals, state.job_records, state.stat_memo,
               state.written_digests, state.file_summary, lambda: state.last_run("out.txt"),
               lambda: state.uptodate("plan", "content")]
    for query in queries:
        with pytest.raises(StateError) as caught:
            query()
        message = str(caught.value)
        assert f"the state database {path} is damaged" in message
        assert "move it aside to start afresh" in message
    state.conn.close()


def test_a_damaged_page_found_while_writing_rolls_back_and_is_a_clear_error(tmp_path):
    state_dir = str(tmp_path / ".rlmake")
    _record_one_build(state_dir)
    _damage_pages(state_dir)
    state = StateDB(state_dir)
    with pytest.raises(StateError, match="is damaged"):
        state.record_run(RunRecord("e2", "b", "b", "k", Status.DONE, (), 1.0, 2.0, 0, NO_INPUTS))
    assert not state.conn.in_transaction    # nothing half written is left to commit
    state.close()


def test_a_lowered_schema_version_is_refused_and_the_records_kept(tmp_path):
    state_dir = str(tmp_path / ".rlmake")
    _record_one_build(state_dir)
    path = os.path.join(state_dir, "state.db")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 2")
    connection.close()
    with pytest.raises(StateError) as caught:
        StateDB(state_dir)
    message = str(caught.value)
    assert path in message and "schema version 2" in message
    assert "move it aside to start afresh" in message
    with sqlite3.connect(path) as connection:           # nothing was migrated or dropped
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        assert connection.execute("SELECT id FROM executions").fetchall() == [("e1",)]
        assert connection.execute("SELECT count(*) FROM run_files").fetchone()[0] == 1
        assert connection.execute("SELECT version FROM records_version").fetchone() is not None
    connection.close()


def test_two_first_opens_at_once_both_succeed(tmp_path):
    """Two processes (here threads, each with its own connection) creating the database at
    the same moment: the schema version is read again inside the migration's transaction,
    so the second sees the first's tables instead of creating them again."""
    failures: list[BaseException] = []

    def first_open(state_dir: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            StateDB(state_dir).close()
        except BaseException as error:      # noqa: BLE001 - collected for the assertion
            failures.append(error)

    for round_number in range(40):
        state_dir = str(tmp_path / f"round{round_number}" / ".rlmake")
        start = threading.Barrier(3)
        threads = [threading.Thread(target=first_open, args=(state_dir, start))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == [], f"round {round_number}: {failures!r}"
        with sqlite3.connect(os.path.join(state_dir, "state.db")) as connection:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        connection.close()


def test_a_state_directory_that_cannot_be_made_is_a_clear_error(tmp_path, monkeypatch):
    """What a read-only project gives a non-root user (root ignores permission bits)."""
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "makedirs", refuse)
    state_dir = str(tmp_path / ".rlmake")
    with pytest.raises(StateError) as caught:
        StateDB(state_dir)
    assert state_dir in str(caught.value) and "Permission denied" in str(caught.value)


def test_a_read_only_state_database_is_a_clear_error(tmp_path, monkeypatch):
    """SQLite's own refusal (a read-only `.rlmake` as a non-root user sees it)."""
    state_dir = str(tmp_path / ".rlmake")
    _record_one_build(state_dir)
    real_connect = sqlite3.connect

    def read_only(path, *args, **kwargs):
        return real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    state = StateDB(state_dir)
    with pytest.raises(StateError) as caught:
        state.record_noop("e2", 3.0, ["rlmake", "build"], 0)
    assert os.path.join(state_dir, "state.db") in str(caught.value)
    assert "readonly" in str(caught.value)


@pytest.mark.integration
@pytest.mark.parametrize("command", [["build"], ["why"], ["log"], ["log", "-"], ["clean"],
                                     ["cache", "stats"]])
def test_every_command_on_a_damaged_database_exits_2_with_the_advice(tmp_path, command):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "Rulesfile.yaml").write_text("rules:\n  out.txt:\n    command: echo hi > out.txt\n")
    state_dir = str(root / ".rlmake")
    _record_one_build(state_dir)
    path = _damage_pages(state_dir)
    done = subprocess.run([*rlmake_exe(), *command], cwd=root, capture_output=True, text=True,
                          env=build_env(), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"the state database {path} is damaged" in done.stderr
    assert "move it aside to start afresh" in done.stderr
    assert not (root / "out.txt").exists()      # nothing ran on records it cannot read


class _InterruptAfterCommit:
    """A connection that commits, then is interrupted before control comes back."""

    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        result = self._conn.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return result


def test_an_interrupt_right_after_a_commit_leaves_nothing_to_commit_again(tmp_path):
    state = StateDB(str(tmp_path / ".rlmake"))
    real = state.conn
    state.conn = _InterruptAfterCommit(real)
    with pytest.raises(KeyboardInterrupt):
        state.record_noop("e1", 1.0, ["rlmake", "build"], 0)
    state.conn = real
    state.close()                   # used to commit again: "no transaction is active"
    reopened = StateDB(str(tmp_path / ".rlmake"))
    assert [e.id for e in reopened.executions()] == ["e1"]
    reopened.close()
