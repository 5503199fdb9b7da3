"""The project's `.rlmake` directory: making it, and saying what to do when that fails.

The lock, the state database and the stores all live there, so a `.rlmake` that is a
file, a symlink loop or not writable stops every command that writes, with one
message that names the path and the fix.
"""

from __future__ import annotations

import errno
import os

from rlmake.errors import StateError

_ADVICE: dict[int | None, str] = {     # by errno, which an OSError may lack
    errno.EACCES: "make it writable, or build a writable copy of the project",
    errno.EPERM: "make it writable (is it immutable?), or build a writable copy of the project",
    errno.EROFS: "the file system is read-only: build a writable copy of the project",
    errno.ELOOP: "it is a loop of symbolic links: remove it",
    errno.ENAMETOOLONG: "the path is too long: move the project somewhere shorter",
    errno.ENOTDIR: "it is not a directory: move it aside (rlmake keeps its state there)",
    errno.EISDIR: "it is a directory: remove it (rlmake makes it again)",
    errno.ENOSPC: "the disk is full: free some space",
    errno.ENOENT: "it is a symbolic link to a missing path: fix or remove the link",
}


def unusable(what: str, path: str, error: OSError) -> StateError:
    """The error for a file or directory of rlmake's own that cannot be made or opened."""
    advice = _ADVICE.get(error.errno, "move it aside or fix it")
    return StateError(f"cannot use the {what} {path}: {error.strerror or error}; {advice}")


def make_state_dir(state_dir: str) -> None:
    try:
        os.makedirs(state_dir, exist_ok=True)
    except OSError as error:
        raise unusable("state directory", state_dir, _why_not_a_directory(state_dir, error)) \
            from None


def check_state_dir(state_dir: str) -> None:
    """Refuse a `.rlmake` that exists but is no directory (a reader need not make one)."""
    if os.path.lexists(state_dir) and not os.path.isdir(state_dir):
        make_state_dir(state_dir)


def _why_not_a_directory(state_dir: str, error: OSError) -> OSError:
    """makedirs says only 'File exists' for a file, a dangling link or a link loop."""
    if error.errno != errno.EEXIST:
        return error
    try:
        os.stat(state_dir)
    except OSError as reason:
        return reason
    return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), state_dir)
