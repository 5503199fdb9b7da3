"""Project paths: normalising them, and the questions expansion asks of the file system."""

from __future__ import annotations

import os
import stat

STATE_DIR = ".rlmake"           # rlmake's own files, in the project directory


def in_state_dir(path: str) -> bool:
    """Whether the normalised project path `path` is rlmake's state directory or inside it."""
    return path == STATE_DIR or path.startswith(STATE_DIR + "/")


def normalise(path: str, project_dir: str) -> str:
    """`./x`, `a/../x` and `x` are one path; absolute paths inside the project become relative."""
    if os.path.isabs(path):
        inside = os.path.relpath(path, project_dir)
        return os.path.normpath(path) if inside.startswith("..") else os.path.normpath(inside)
    return os.path.normpath(path)


def is_project_path(path) -> bool:
    """A path as rlmake writes a project file's: relative, normalised, not `.`, no `..`,
    and not in rlmake's own state directory. What a stored record may name."""
    if not isinstance(path, str) or not path or "\0" in path or os.path.isabs(path):
        return False
    if os.path.normpath(path) != path or path == ".":
        return False
    try:
        os.fsencode(path)
    except UnicodeEncodeError:          # a lone surrogate no file name can hold
        return False
    parts = path.split(os.sep)
    return ".." not in parts and parts[0] != STATE_DIR


def probe(path: str, dir_fd: int | None = None) -> str:
    """'file', 'dir' or 'missing': what expansion asks of a path, and a stored plan rechecks.

    `path` is relative to `dir_fd` when given (absolute paths ignore it)."""
    try:
        mode = os.stat(path, dir_fd=dir_fd).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return "dir" if stat.S_ISDIR(mode) else "file"


def is_text(path: str) -> bool:
    """Whether `path` is valid UTF-8: a name the OS gave in other bytes arrives with
    surrogate escapes, and cannot go into the JSON and SQLite where rlmake keeps paths."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """A path for a message, its undecodable bytes written as `\\xff`."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeError:            # a lone surrogate that no file name could have given
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def glob_files(project_dir: str, pattern: str) -> tuple[str, ...]:
    """Sorted project files matching `pattern`; `**` spans directories; dot-names skipped
    by wildcards, and rlmake's own state never matched, even when the pattern names it
    (a job reading .rlmake/lock would be stale on every build)."""
    import glob

    found = (os.path.normpath(path)
             for path in glob.glob(pattern, root_dir=project_dir, recursive=True))
    return tuple(sorted(path for path in found if not in_state_dir(path)
                        and os.path.isfile(os.path.join(project_dir, path))))
