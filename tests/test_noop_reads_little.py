"""A no-op build reads only what it needs: the stored plan's key, not its jobs, and
each piece of the up-to-date snapshot once, not all of them held at once."""

from __future__ import annotations

import sqlite3

import pytest

from conftest import run_cli, write_project
from rlmake import plancache, uptodate

pytestmark = pytest.mark.integration      # the build runs its command

RULES = """
    rules:
      out: {deps: [a.txt, b.txt], command: "cat a.txt b.txt > out"}
"""


@pytest.fixture
def built(tmp_path):
    root = write_project(tmp_path, RULES, {"a.txt": "a\n", "b.txt": "b\n"})
    for _ in range(2):
        result = run_cli(["build"], root)
        assert result.exit_code == 0, result.describe()
    return root


def test_a_no_op_never_decodes_the_plans_jobs(built, monkeypatch):
    def refuse(body, with_commands):
        raise AssertionError("a no-op decoded the stored plan's jobs")

    monkeypatch.setattr(plancache, "_decode_body", refuse)
    result = run_cli(["build"], built)
    assert result.exit_code == 0, result.describe()
    assert "nothing to do" in result.stdout
    (built / "a.txt").write_text("changed\n")
    monkeypatch.undo()                      # an edit needs the jobs: decoded then
    assert run_cli(["build"], built).exit_code == 0


def test_a_no_op_decodes_each_piece_once(built, monkeypatch):
    decoded = []
    columns = uptodate.Piece.columns

    monkeypatch.setattr(uptodate.Piece, "columns",
                        lambda piece: decoded.append(piece) or columns(piece))
    assert run_cli(["build"], built).exit_code == 0
    assert len(decoded) == 1                # three files: one piece


def test_a_piece_that_does_not_decode_is_no_snapshot(built):
    with sqlite3.connect(built / ".rlmake" / "state.db") as db:
        assert db.execute("UPDATE uptodate_pieces SET entries = x'00ff'").rowcount == 1
    db.close()
    result = run_cli(["build"], built)
    assert result.exit_code == 0 and result.stderr == "", result.describe()
    assert run_cli(["build"], built).exit_code == 0
