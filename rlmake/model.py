"""Plain, frozen data that every layer shares: what a Rulesfile says, and the jobs it expands to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Location:
    """Where something was written: a file as the user named it, and a 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class RuleSpec:
    """One rule as written, its templates not yet rendered."""

    key: str
    where: Location
    deps: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    phony: bool = False
    always: bool = False
    env: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    pool: str | None = None
    depfile: str | None = None
    foreach: tuple[tuple[str, Any], ...] = ()
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key, self.where.line)


@dataclass(frozen=True)
class Rulesfile:
    """A loaded Rulesfile with its includes merged in."""

    path: str                       # the top file, as the user would name it
    project_dir: str                # absolute
    vars: dict[str, Any]
    default: tuple[str, ...] | None
    pools: dict[str, int]
    rules: tuple[RuleSpec, ...]
    files: tuple[str, ...]          # every file read, absolute: the top file, then includes
    top_rule_count: int             # how many of `rules` come from the top file


@dataclass(frozen=True)
class Job:
    """One rule made for one target: the unit that is hashed, cached and run."""

    target: str                     # the job's id: its first target
    rule: str                       # the rule's key as written
    where: Location
    outputs: tuple[str, ...]        # files it writes; empty for phony and aggregate jobs
    deps: tuple[str, ...]
    commands: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    pool: str | None = None
    depfile: str | None = None
    phony: bool = False
    always: bool = False

    @property
    def is_aggregate(self) -> bool:
        """No command: it only gathers its deps and writes nothing."""
        return not self.commands

    @property
    def writes_files(self) -> bool:
        return bool(self.outputs)

    def label(self) -> str:
        return self.description or (self.commands[0] if self.commands else self.target)
