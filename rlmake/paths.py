"""Project-relative path normalisation shared by every layer."""

from __future__ import annotations

import os


def normalise(path: str, project_dir: str) -> str:
    """`./x`, `a/../x` and `x` are one path; absolute paths inside the project become relative."""
    if os.path.isabs(path):
        inside = os.path.relpath(path, project_dir)
        return os.path.normpath(path) if inside.startswith("..") else os.path.normpath(inside)
    return os.path.normpath(path)
