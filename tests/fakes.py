"""Seams for in-process engine tests: a clock tests advance and an executor that performs
each job's commands itself, on the real files of a temporary project, without a process.

The executor understands a small shell: `cat`, `echo`, `printf`, `cp`, `touch`, `rm -f`,
`mkdir -p`, `true`, `false`, `exit N`, with `>`/`>>` redirection and `;`/`&&` lists. A
command outside it fails the test: a fake that guessed would let a test pass unchecked.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
from pathlib import Path
from typing import Callable

from rlmake.executors.base import Completion, Task


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class UnknownCommand(AssertionError):
    pass


class FakeExecutor:
    """Runs tasks one at a time, when `wait` is called, in the order they were started.

    `during[target](task)` runs in the middle of that job (after its first command), as
    if the user acted while it ran; `interrupt_at=N` makes the Nth `wait` raise
    KeyboardInterrupt, as Ctrl-C would."""

    def __init__(self, clock: FakeClock, *, seconds_per_job: float = 1.0,
                 during: dict[str, Callable[[Task], None]] | None = None,
                 interrupt_at: int | None = None):
        self.clock = clock
        self.seconds_per_job = seconds_per_job
        self.during = dict(during or {})
        self.interrupt_at = interrupt_at
        self.ran: list[str] = []            # targets whose commands ran, in order
        self.commands: list[str] = []       # every command run
        self.cancelled = False
        self._queued: collections.deque[Task] = collections.deque()
        self._waits = 0

    def start(self, task: Task) -> None:
        self._queued.append(task)

    def wait(self, timeout: float | None = None) -> Completion | None:
        self._waits += 1
        if self.interrupt_at is not None and self._waits >= self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        if not self._queued:
            return None
        task = self._queued.popleft()
        if self.cancelled:
            now = self.clock.time()
            return Completion(task.id, -signal.SIGTERM, b"", now, now, error="interrupted")
        return self._run(task)

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        pass

    def _run(self, task: Task) -> Completion:
        started = self.clock.time()
        for directory in task.make_dirs:
            os.makedirs(directory, exist_ok=True)
        self.ran.append(task.id)
        output = bytearray()
        for number, command in enumerate(task.commands):
            self.commands.append(command)
            status = run_shell(command, Path(task.cwd), output)
            if number == 0 and task.id in self.during:
                self.during.pop(task.id)(task)
            if status != 0:
                self.clock.advance(self.seconds_per_job)
                return Completion(task.id, status, bytes(output), started, self.clock.time(),
                                  command)
        self.clock.advance(self.seconds_per_job)
        return Completion(task.id, 0, bytes(output), started, self.clock.time())


def run_shell(command: str, cwd: Path, output: bytearray) -> int:
    """Run `command` in the small shell; its exit status."""
    status = 0
    for separator, simple in _split_list(command):
        if separator == "&&" and status != 0:
            continue
        status = _run_simple(shlex.split(simple), cwd, output)
    return status


def _split_list(command: str) -> list[tuple[str, str]]:
    """The simple commands of a `;`/`&&` list, each with the separator before it, their
    text kept as written (quotes included) for shlex.split to read as sh would."""
    parts, separator, start, quote, i = [], ";", 0, None, 0
    while i < len(command):
        char = command[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";" or command.startswith("&&", i):
            parts.append((separator, command[start:i]))
            separator = "&&" if char == "&" else ";"
            i += len(separator)
            start = i
            continue
        elif char in "|&":
            raise UnknownCommand(f"the fake executor has no pipes or background jobs: {command!r}")
        i += 1
    parts.append((separator, command[start:]))
    return [(sep, text) for sep, text in parts if text.strip()]


def _run_simple(words: list[str], cwd: Path, output: bytearray) -> int:
    target, append = None, False
    if len(words) >= 2 and words[-2] in (">", ">>"):
        target, append = words[-1], words[-2] == ">>"
        words = words[:-2]
    program, args = words[0], words[1:]
    produced: bytes | None = None
    if program == "cat":
        produced = b"".join((cwd / arg).read_bytes() for arg in args)
    elif program == "echo":
        produced = (" ".join(args) + "\n").encode()
    elif program == "printf":
        produced = args[0].encode().decode("unicode_escape").encode() if args else b""
    elif program == "cp":
        (cwd / args[1]).write_bytes((cwd / args[0]).read_bytes())
    elif program == "touch":
        for arg in args:
            (cwd / arg).touch()
    elif program == "rm" and args[:1] == ["-f"]:
        for arg in args[1:]:
            (cwd / arg).unlink(missing_ok=True)
    elif program == "mkdir" and args[:1] == ["-p"]:
        for arg in args[1:]:
            (cwd / arg).mkdir(parents=True, exist_ok=True)
    elif program in ("true", ":"):
        pass
    elif program == "false":
        return 1
    elif program == "exit":
        return int(args[0]) if args else 0
    else:
        raise UnknownCommand(f"the fake executor cannot run {' '.join(words)!r}")
    if produced is not None:
        if target is None:
            output += produced
        else:
            with open(cwd / target, "ab" if append else "wb") as stream:
                stream.write(produced)
    return 0
