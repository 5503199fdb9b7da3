"""The public Python API: a project directory, its Rulesfile, and what can be done with it."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any, Iterable

from rlmake import rulesfile as rulesfile_loader
from rlmake.expand import Expander, Plan
from rlmake.model import Rulesfile


class Project:
    """A Rulesfile found from `directory` (make's -C) or named by `file` (-f)."""

    def __init__(self, directory: str = ".", file: str | None = None,
                 overrides: dict[str, Any] | None = None):
        self.path = rulesfile_loader.find_rulesfile(os.path.abspath(directory), file)
        self.directory = os.path.dirname(self.path)
        self.overrides = dict(overrides or {})

    @cached_property
    def rulesfile(self) -> Rulesfile:
        return rulesfile_loader.load(self.path)

    @cached_property
    def expander(self) -> Expander:
        return Expander(self.rulesfile, self.overrides)

    def requested(self, targets: Iterable[str]) -> list[str]:
        """Command-line targets, normalised and checked; none means the default targets."""
        targets = list(targets)
        if not targets:
            return self.expander.default_targets()
        return self.expander.check_requested(targets)

    def plan(self, targets: Iterable[str] = ()) -> Plan:
        return self.expander.plan(self.requested(targets))

    @property
    def state_dir(self) -> str:
        return os.path.join(self.directory, ".rlmake")
