"""A stored plan (.rlmake/plans/) changed on disk is discarded and the plan expanded from
the Rulesfile again: no flipped bit may run a command that no Rulesfile says, or end in
a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli, run_subprocess, write_project

RULES = """
    rules:
      all: {deps: [b.txt, c.txt], phony: true}
      a.txt: {command: "echo alpha > a.txt"}
      b.txt: {deps: [a.txt], command: "cat a.txt > b.txt"}
      c.txt: {deps: [a.txt], command: "tr a-z A-Z < a.txt > c.txt"}
    """
COMMANDS = ["echo alpha > a.txt", "cat a.txt > b.txt", "tr a-z A-Z < a.txt > c.txt"]
POSITIONS = 200


def stored_plan(project: Path) -> Path:
    [path] = (project / ".rlmake" / "plans").iterdir()
    return path


def store_plan(project: Path) -> None:
    """A dry run writes nothing, so the plan is stored by a command that plans (graph)."""
    result = run_cli(["graph", "-C", project], cwd=project)
    assert result.exit_code == 0 and result.exception is None, result.describe()


def dry_run(project: Path) -> list[str]:
    result = run_cli(["build", "-n", "-C", project], cwd=project)
    assert result.exit_code == 0 and result.exception is None, result.describe()
    return result.lines


def test_no_flipped_bit_in_a_stored_plan_changes_what_would_run(tmp_path):
    write_project(tmp_path, RULES)
    store_plan(tmp_path)
    assert sorted(dry_run(tmp_path)) == sorted(COMMANDS)
    plan = stored_plan(tmp_path)
    good = plan.read_bytes()
    for position in sorted({i * len(good) // POSITIONS for i in range(POSITIONS)}):
        flipped = bytearray(good)
        flipped[position] ^= 0x20               # in a command: a letter changes case
        plan.write_bytes(bytes(flipped))
        lines = dry_run(tmp_path)
        assert sorted(lines) == sorted(COMMANDS), f"byte {position} flipped: {lines}"


def test_a_plan_that_does_not_decode_is_expanded_again(tmp_path):
    write_project(tmp_path, RULES)
    store_plan(tmp_path)
    plan = stored_plan(tmp_path)
    good = plan.read_bytes()
    for cut in (0, 1, 39, 40, 41, len(good) // 2, len(good) - 1):
        plan.write_bytes(good[:cut])
        assert sorted(dry_run(tmp_path)) == sorted(COMMANDS), f"cut at {cut}"


@pytest.mark.integration
def test_a_flipped_byte_in_a_stored_command_does_not_run(tmp_path):
    write_project(tmp_path, RULES)
    first = run_subprocess(["build", "--no-local-cache"], cwd=tmp_path)
    assert first.exit_code == 0, first.describe()
    (tmp_path / "a.txt").unlink()
    plan = stored_plan(tmp_path)
    data = plan.read_bytes()
    at = data.index(b"echo alpha")
    plan.write_bytes(data[:at] + b"echo alpHa" + data[at + len(b"echo alpha"):])
    second = run_subprocess(["build", "--no-local-cache"], cwd=tmp_path)
    assert second.exit_code == 0 and "Traceback" not in second.stderr, second.describe()
    assert (tmp_path / "a.txt").read_text() == "alpha\n"
