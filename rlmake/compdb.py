"""`rlmake compdb`: a JSON compilation database (compile_commands.json) for clangd and
IDEs, as `ninja -t compdb` writes one.

Each job that reads a C-family source (by its extension) gives one entry per source:
the command that names it (else the job's first), run in the project directory, and
the job's target as its output. Nothing runs; the plan is all it needs.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Iterable

from rlmake.model import Job

SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".c++", ".C", ".m", ".mm", ".cu")


def entries(jobs: Iterable[Job], project_dir: str) -> list[dict[str, Any]]:
    found = []
    for job in jobs:
        if not job.commands:
            continue
        for source in job.deps:
            if source.endswith(SOURCE_SUFFIXES):
                found.append({"directory": project_dir, "command": _command_for(job, source),
                              "file": source, "output": job.target})
    return found


def _command_for(job: Job, source: str) -> str:
    for command in job.commands:
        if source in command or shlex.quote(source) in command:
            return command
    return job.commands[0]


def write(found: list[dict[str, Any]], path: str) -> None:
    """Atomically: an editor reading the file never sees half of it."""
    from rlmake.reporters.reportfile import write_atomically

    write_atomically(path, (json.dumps(found, indent=2) + "\n").encode(),
                     "the compilation database", make_parents=False)
