"""The errors rlmake reports, each with the exit status it ends the run with."""

from __future__ import annotations

import os
import signal


class RlmakeError(Exception):
    """A problem the user can act on; the CLI prints it and exits with `exit_code`."""

    exit_code = 2


class UsageError(RlmakeError):
    """A bad command line: an unknown target, a malformed override."""


class RulesfileError(RlmakeError):
    """A mistake in a Rulesfile, reported as `file:line: rule 'name': message`, or
    `rule 'name' (target 'path'): message` for one copy of a foreach or pattern rule."""

    def __init__(self, message: str, path: str | None = None,
                 line: int | None = None, rule: str | None = None, target: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.rule = rule
        self.target = target

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        rule = ""
        if self.rule is not None:
            target = f" (target '{self.target}')" if self.target not in (None, self.rule) else ""
            rule = f"rule '{self.rule}'{target}: "
        return f"{where}{rule}{self.message}"


class UnreadableFile(RlmakeError):
    """A file the build must read but cannot: a symlink loop, no permission, a name too
    long or not UTF-8. A declared source's problem ends the build with status 2; a job
    whose output or depfile dep it is fails with this message instead."""

    def __init__(self, path: str, problem: str):
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    @classmethod
    def from_os_error(cls, path: str, error: OSError) -> "UnreadableFile":
        problem = error.strerror or str(error)
        return cls(path, problem[:1].lower() + problem[1:])

    @property
    def quoted(self) -> str:
        """The path in quotes, printable whatever bytes its name holds."""
        return "'" + os.fsencode(self.path).decode("utf-8", "backslashreplace") + "'"

    def __str__(self) -> str:
        return f"cannot read {self.quoted}: {self.problem}"


class StateError(RlmakeError):
    """The state database cannot be opened or is from a newer rlmake."""


class BuildLocked(RlmakeError):
    """Another build holds the project lock and the user asked not to wait."""


class BuildFailed(RlmakeError):
    """At least one command failed."""

    exit_code = 1


class ExecutorLost(RlmakeError):
    """The executor can run nothing any more (a Dask scheduler that went away): 3, not 1,
    because no command failed; the jobs it was running have no result. The executor's
    `wait` raises it; the scheduler stops the build."""

    exit_code = 3


class Interrupted(RlmakeError):
    """The user pressed Ctrl-C (or rlmake got SIGINT, SIGTERM or SIGHUP): 130 for each,
    as a shell reports Ctrl-C, so that scripts test one status for "interrupted"."""

    exit_code = 130


# The signals that interrupt a build; a second one while the first is handled kills at once.
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def did_you_mean(name: str, choices) -> str:
    """A ` (did you mean 'x'?)` suffix when a close name exists, else ''."""
    import difflib      # only on a mistake: not on every build's path

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
