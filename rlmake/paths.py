"""Project paths: normalising them, and the questions expansion asks of the file system."""

from __future__ import annotations

import os
import stat


def normalise(path: str, project_dir: str) -> str:
    """`./x`, `a/../x` and `x` are one path; absolute paths inside the project become relative."""
    if os.path.isabs(path):
        inside = os.path.relpath(path, project_dir)
        return os.path.normpath(path) if inside.startswith("..") else os.path.normpath(inside)
    return os.path.normpath(path)


def probe(path: str, dir_fd: int | None = None) -> str:
    """'file', 'dir' or 'missing': what expansion asks of a path, and a stored plan rechecks.

    `path` is relative to `dir_fd` when given (absolute paths ignore it)."""
    try:
        mode = os.stat(path, dir_fd=dir_fd).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return "dir" if stat.S_ISDIR(mode) else "file"


def glob_files(project_dir: str, pattern: str) -> tuple[str, ...]:
    """Sorted project files matching `pattern`; `**` spans directories; dot-names skipped."""
    import glob

    found = glob.glob(pattern, root_dir=project_dir, recursive=True)
    return tuple(sorted(os.path.normpath(path) for path in found
                        if os.path.isfile(os.path.join(project_dir, path))))
