"""The store protocol: where action records and output blobs live.

A store only moves bytes; verifying them, signing records and deciding what
to trust is artifacts.ArtifactCache's job, the same for every store.
"""

from __future__ import annotations

import os
from typing import Protocol

from rlmake.hashing import LOWER_HEX


MARKER_NAME = "rlmake-store.json"     # at the store's root: what trust.py reads and writes


class StoreError(Exception):
    """The store could not be reached or answered with an error."""


class Store(Protocol):
    name: str           # how messages and `why` name it: "local cache", "s3://bucket/prefix"
    is_local: bool      # on this machine's disk: asked and written without threads

    def get_action(self, key: str) -> bytes | None:
        """The action record stored under a job key, or None."""

    def put_action(self, key: str, data: bytes) -> None: ...

    def has_blob(self, digest: str) -> bool: ...

    def fetch_blob(self, digest: str, destination: str) -> bool:
        """Write the blob to `destination` (a new file); False if the store lacks it."""

    def put_blob(self, digest: str, source: str) -> None:
        """Store the file at `source` under `digest` (the caller has hashed it)."""

    def get_marker(self, limit: int) -> bytes | None:
        """At most `limit` bytes of the store's MARKER_NAME, or None if it has none."""

    def put_marker(self, data: bytes) -> None:
        """Write MARKER_NAME, unless something is there already."""


_TOKEN_BYTES = 8         # a temporary's name is its prefix and this many random bytes in hex


_token_state: list[int] = []     # [random base, count]: drawn once a process


def _next_token() -> str:
    """A fresh token: half drawn at random once a process, half a count. A random draw
    per name was a system call per stored file; a clash (another process that drew the
    same half and counted as far) only costs O_EXCL's retry."""
    if not _token_state:
        _token_state[:] = [int.from_bytes(os.urandom(4), "big"), 0]
    _token_state[1] = (_token_state[1] + 1) & 0xFFFFFFFF
    return f"{_token_state[0]:08x}{_token_state[1]:08x}"        # _TOKEN_BYTES in hex


def new_temporary(directory: str, prefix: str) -> str:
    """Create an empty file with a fresh name in `directory`; its path."""
    path, fd = open_temporary(directory, prefix)
    os.close(fd)
    return path


def open_temporary(directory: str, prefix: str, mode: int = 0o600) -> tuple[str, int]:
    """Create an empty file with a fresh name in `directory`; its path and a descriptor open
    for writing (tempfile would import `random`, which costs every build that stores).
    `mode` is masked by the umask, as for any new file."""
    while True:
        path = os.path.join(directory, prefix + _next_token())
        try:
            return path, os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
        except FileExistsError:
            continue


def is_temporary(name: str, prefix: str) -> bool:
    """Whether `name` is exactly one of open_temporary's names for `prefix`: what a killed
    rlmake left behind may be removed, and nothing else."""
    token = name[len(prefix):]
    return (name.startswith(prefix) and len(token) == 2 * _TOKEN_BYTES
            and not token.strip(LOWER_HEX))
