"""The local executor keeps every byte a command writes, whatever its size and however
it ends: the end of a command's output is taken from poll when nothing is left to read,
and that must never lose what was still in the pipe."""

from __future__ import annotations

import os
import sys

import pytest

from rlmake.executors.base import Task
from rlmake.executors.local import LocalExecutor

pytestmark = pytest.mark.integration


def _writes(size: int, fill: str) -> str:
    """A command writing `size` bytes of `fill` to stdout, and nothing else."""
    return (f"{sys.executable} -c \"import os; data = b'{fill}' * {size}; "
            f"n = 0\nwhile n < len(data): n += os.write(1, data[n:])\"")


SIZES = [0, 1, 3, 4095, 4096, 65535, 65536, 65537, 200_001]


def test_every_byte_of_every_command_is_kept(tmp_path):
    tasks = {f"t{size}": Task(f"t{size}", (_writes(size, "a"), "echo between",
                                              _writes(size, "b")), os.getcwd())
             for size in SIZES}
    expected = {f"t{size}": b"a" * size + b"between\n" + b"b" * size for size in SIZES}
    tasks["stderr"] = Task("stderr", ("echo out; echo err >&2; echo out2",), os.getcwd())
    expected["stderr"] = b"out\nerr\nout2\n"
    tasks["closes early"] = Task("closes early",
                                 ("echo first; exec >&- 2>&-; sleep 0.2; exit 3",), os.getcwd())
    expected["closes early"] = b"first\n"
    executor = LocalExecutor(2)
    try:
        assert executor.wait(0) is None
        pending = list(tasks.values())
        for task in pending[:2]:
            executor.start(task)
        pending = pending[2:]
        done = {}
        while len(done) < len(tasks):
            completion = executor.wait()
            assert completion is not None
            done[completion.id] = completion
            if pending:
                executor.start(pending.pop())
    finally:
        executor.close()
    for name, completion in done.items():
        assert completion.output == expected[name], name
        assert completion.exit_code == (3 if name == "closes early" else 0), completion
