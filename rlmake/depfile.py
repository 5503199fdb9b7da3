"""Parsing make-style dependency files (`gcc -MMD -MF x.d`)."""

from __future__ import annotations

import errno
import os
import stat


class DepfileError(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def read(path: str) -> str:
    """The text of the depfile at `path`. A command may leave a FIFO, a device or a
    directory there: OSError, without blocking on it or reading without end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a directory, FIFO, socket or "
                                        "device)")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def parse(text: str) -> list[str]:
    """Every prerequisite of every rule in `text`, in order, each once.

    Handles backslash-newline continuations, `\\ ` (escaped space), `$$`, `\\#`,
    several targets per rule, several rules, and blank lines.
    """
    prerequisites: dict[str, None] = {}
    for line_number, logical in _logical_lines(text):
        words = _words(logical)
        if not words:
            continue
        colon = next((i for i, word in enumerate(words) if word.endswith(":")), None)
        if colon is None:
            raise DepfileError("expected 'target: prerequisites'", line_number)
        for word in words[colon + 1:]:
            prerequisites.setdefault(word)
    return list(prerequisites)


def _logical_lines(text: str):
    start, pending = 1, ""
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _words(line: str) -> list[str]:
    words, current, index = [], [], 0
    while index < len(line):
        char = line[index]
        following = line[index + 1] if index + 1 < len(line) else ""
        if char == "\\" and following in (" ", "#", "\\", ":"):
            current.append(following)
            index += 2
            continue
        if char == "$" and following == "$":
            current.append("$")
            index += 2
            continue
        if char in " \t":
            if current:
                words.append("".join(current))
                current = []
        elif char == ":" and following in (" ", "\t", ""):
            current.append(":")
            words.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    if current:
        words.append("".join(current))
    return words
