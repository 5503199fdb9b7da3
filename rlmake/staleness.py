"""Deciding whether a job must run: one pure function, `decide`, used by build and by why.

The build stops at the first reason; `why` asks for all of them. A job's order-only deps
are never a reason: they are built first, but only what its depfile lists of them counts.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator, Sequence

from rlmake.model import Decision, Job, JobInputs, JobRecord, Reason, ReasonKind

DigestOf = Callable[[str], "str | None"]


def decide(job: Job, key: str, dep_digests: Sequence[tuple[str, str | None]],
           record: JobRecord | None, current_digest: DigestOf, *, forced: bool = False,
           unfinished: ReasonKind | None = None, all_reasons: bool = False) -> Decision:
    """Why `job`, whose key is now `key`, must run; no reasons means it is up to date.

    `current_digest` gives a file's digest on disk now (None when missing). `unfinished`:
    for a job with no record, how its last run ended if it did not succeed
    (LAST_RUN_FAILED or LAST_RUN_STOPPED), said instead of NEVER_BUILT.
    """
    reasons = _reasons(job, key, dep_digests, record, current_digest, forced, unfinished)
    return Decision(key, tuple(itertools.islice(reasons, None if all_reasons else 1)))


def _reasons(job: Job, key: str, dep_digests: Sequence[tuple[str, str | None]],
             record: JobRecord | None, current_digest: DigestOf, forced: bool,
             unfinished: ReasonKind | None) -> Iterator[Reason]:
    if record is None:
        yield Reason(unfinished or ReasonKind.NEVER_BUILT)
        return
    if forced:
        yield Reason(ReasonKind.FORCED)
    if job.always:
        yield Reason(ReasonKind.ALWAYS)
    if key != record.key:
        yield from _input_changes(job, dep_digests, record.inputs)
    for path, old in record.depfile_deps.items():
        new = current_digest(path)
        if new != old:
            yield Reason(ReasonKind.DEPFILE_DEP_CHANGED, path, old, new)
    for path in job.outputs:
        now = current_digest(path)
        if now is None:
            yield Reason(ReasonKind.OUTPUT_MISSING, path)
        elif now != record.outputs.get(path):
            yield Reason(ReasonKind.OUTPUT_EDITED, path, record.outputs.get(path), now)


def _input_changes(job: Job, dep_digests: Sequence[tuple[str, str | None]],
                   old: JobInputs) -> Iterator[Reason]:
    found = False
    if tuple(job.commands) != old.commands:
        found = True
        yield Reason(ReasonKind.COMMAND_CHANGED, None, list(old.commands), list(job.commands))
    if dict(job.env) != old.env:
        found = True
        yield Reason(ReasonKind.ENV_CHANGED, None, old.env, dict(job.env))
    if sorted(job.outputs) != sorted(old.outputs):
        found = True
        yield Reason(ReasonKind.OUTPUT_LIST_CHANGED, None, list(old.outputs), list(job.outputs))
    old_deps = [path for path, _ in old.deps]
    if old_deps != [path for path, _ in dep_digests]:
        found = True
        yield Reason(ReasonKind.DEP_LIST_CHANGED, None, old_deps, [p for p, _ in dep_digests])
    old_digests = dict(old.deps)
    for path, digest in dep_digests:
        if path in old_digests and old_digests[path] != digest:
            found = True
            yield Reason(ReasonKind.DEP_CHANGED, path, old_digests[path], digest)
    if not found:
        yield Reason(ReasonKind.INPUTS_CHANGED)
