"""Finding the Rulesfile, and naming files the way the user would type them."""

from __future__ import annotations

import os

from rlmake.errors import UsageError
from rlmake.paths import is_text, shown

RULESFILE_NAMES = ("Rulesfile.yaml", "Rulesfile.yml", "Rulesfile")


def find_rulesfile(directory: str, named: str | None) -> str:
    """The absolute path of the Rulesfile to use, after `-C` has been applied."""
    path = _find(directory, named)
    if not is_text(path):
        raise UsageError(f"the Rulesfile's path '{shown(path)}' is not UTF-8; rlmake keeps "
                         "paths as text: rename the directory")
    return path


def _find(directory: str, named: str | None) -> str:
    if named:
        path = os.path.join(directory, named)
        if not os.path.isfile(path):
            raise UsageError(f"Rulesfile '{shown(named)}' not found")
        return os.path.abspath(path)
    for name in RULESFILE_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise UsageError(f"no Rulesfile in {directory} (looked for {', '.join(RULESFILE_NAMES)})")


def display_path(path: str) -> str:
    """A path as the user would type it from where rlmake was started."""
    relative = os.path.relpath(path)
    return path if relative.startswith("../../..") else relative
