"""The compiled plan: an expanded Plan stored in `.rlmake/plans/`, so that a build
whose Rulesfiles, overrides and file system answers are unchanged skips YAML,
Jinja2 and expansion entirely.

A stored plan is used only if everything expansion read still reads the same:
the content of every Rulesfile it loaded, the result of every glob(), the kind
(file, directory, missing) of every path whose existence it asked about, and
rlmake's own expansion code.

A stored plan is also checked against itself before any of it is read: the
file starts with the digest of the rest, and a file whose digest does not
match, or that does not decode, is discarded and the plan expanded again. A
flipped bit on disk must not run a command that no Rulesfile says.
"""

from __future__ import annotations

import marshal
import os
import time
import zlib
from typing import NamedTuple

from rlmake import __version__
from rlmake.hashing import digest_bytes, digest_file, digest_structure
from rlmake.model import Job, JobList, Location, Plan, PlanBody, PlanIndex
from rlmake.paths import glob_files, probed
from rlmake.uptodate import Seen, seen_stat

FORMAT = 8
# Each file starts with the CRC-32 of the rest: it finds damage (flipped bits, a torn
# write) before anything is read, at a fifth of a digest's cost on a 10,000-job plan.
# Not a defence against someone who writes .rlmake/ on purpose: they could write anything.
_SEAL_SIZE = 4
# The modules whose code decides what a Rulesfile expands to.
_EXPANSION_CODE = ("rules/rulesfile.py", "rules/templates.py", "rules/expand.py", "model.py",
                   "paths.py", "plancache.py")


class Inputs(NamedTuple):
    """Everything expansion read, to be checked before a stored plan is trusted."""

    files: tuple[tuple[str, str], ...]          # absolute Rulesfile path, content digest
    globs: tuple[tuple[str, tuple[str, ...]], ...]
    probes: tuple[tuple[str, str], ...]         # project path, kind


def entry_name(rulesfile: str, targets: list[str], overrides: dict) -> str:
    """Which stored plan answers this command line (the cwd names files in messages)."""
    return digest_structure(["plan-key", FORMAT, __version__, rulesfile, os.getcwd(), targets,
                             sorted((name, repr(value)) for name, value in overrides.items())])


def load(state_dir: str, name: str, project_dir: str) -> Plan | None:
    """The stored plan, if there is one and everything it was expanded from is unchanged.

    Its `key` is the digest of its content, so that what is remembered about a plan
    (its up-to-date snapshot) is forgotten when any of its commands, deps or outputs
    changes."""
    try:
        with open(os.path.join(state_dir, "plans", name), "rb") as stream:
            stored = _unsealed(stream.read())
        if stored is None:
            return None
        form, code, files, globs, probes, identity, head, body = marshal.loads(stored)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if form != FORMAT or code != _code_fingerprint():
        return None
    seen = Seen(time.time_ns(), {})
    if not _unchanged(project_dir, files, globs, probes, seen.stats):
        return None
    try:
        requested, pools, hash_setting, with_commands = head
    except (ValueError, TypeError):
        return None
    # The body stays bytes until read: a no-op build needs only the key and the count.
    return Plan.deferred(requested, pools, hash_setting, identity, with_commands,
                         lambda: _decode_body(body, with_commands), seen)


def identify(plan: Plan) -> Plan:
    """The plan with the content key `save` would give it, stored nowhere (a dry run)."""
    return plan.with_key(_identified(plan)[2])


def _identified(plan: Plan) -> tuple[tuple, bytes, str]:
    head, body = _encode(plan)
    return head, body, digest_bytes(marshal.dumps((head, body)))


def save(state_dir: str, name: str, plan: Plan, inputs: Inputs) -> Plan:
    """Store atomically (a failure to store only costs speed next time); returns the plan
    with its content key."""
    directory = os.path.join(state_dir, "plans")
    head, body, identity = _identified(plan)
    stored = (FORMAT, _code_fingerprint(), inputs.files, inputs.globs, inputs.probes, identity,
              head, body)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(temporary, "wb") as stream:
            stream.write(_sealed(marshal.dumps(stored)))
        os.replace(temporary, os.path.join(directory, name))
    except OSError:
        try:
            os.remove(temporary)
        except OSError:
            pass
    return plan.with_key(identity)


def _sealed(body: bytes) -> bytes:
    """`body` behind its own checksum, so that a change on disk is found before it is read."""
    return zlib.crc32(body).to_bytes(_SEAL_SIZE, "big") + body


def _unsealed(data: bytes) -> bytes | None:
    """The body of a sealed file, or None if it is not the body its checksum was taken of."""
    seal, body = data[:_SEAL_SIZE], data[_SEAL_SIZE:]
    return body if zlib.crc32(body).to_bytes(_SEAL_SIZE, "big") == seal else None


def _unchanged(project_dir: str, files, globs, probes, seen: dict[str, bytes]) -> bool:
    """Whether expansion would read the same; the stat of each probed file is put in
    `seen`, for the up-to-date snapshot to use rather than stat it again."""
    for path, digest in files:
        try:
            if digest_file(path) != digest:
                return False
        except OSError:
            return False
    for pattern, results in globs:
        if glob_files(project_dir, pattern) != tuple(results):
            return False
    directory = os.open(project_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path, kind in probes:
            now, found = probed(path, directory)
            if now != kind:
                return False
            if found is not None and now == "file":
                packed = seen_stat(found)
                if packed is not None:
                    seen[path] = packed
        return True
    except OSError:         # a path expansion could stat no longer can: let it say why
        return False
    finally:
        os.close(directory)


def _code_fingerprint() -> tuple:
    here = os.path.dirname(__file__)
    return (__version__, *(os.stat(os.path.join(here, name)).st_mtime_ns
                           for name in _EXPANSION_CODE))


def _encode(plan: Plan) -> tuple[tuple, bytes]:
    """The plan as (head, body): what a no-op reads, and the rest, marshalled apart."""
    jobs = tuple((job.target, job.rule, job.where.path, job.where.line, job.outputs, job.deps,
                  job.commands, job.env, job.description, job.pool, job.depfile, job.phony,
                  job.always, job.vars, job.order_only) for job in plan.jobs)
    head = (plan.requested, plan.pools, plan.hash_setting, plan.count_with_commands())
    return head, marshal.dumps((jobs, plan.producers, plan.sources, tuple(plan.index)))


def _decode_body(body: bytes, with_commands: int) -> PlanBody:
    """Checked by the seal when the file was read, and written by this code (the format
    and code fingerprint matched): it decodes, or rlmake itself is wrong."""
    jobs, producers, sources, index = marshal.loads(body)
    return _StoredJobs(jobs, with_commands), producers, sources, PlanIndex(*index)


class _StoredJobs(JobList):
    """A stored plan's jobs, each decoded the first time something reads it: a no-op
    build never does, and an edit decodes only the jobs it touches."""

    def __init__(self, encoded: tuple, with_commands: int):
        super().__init__(())
        self._encoded = encoded
        self._with_commands = with_commands
        self._decoded: list[Job | None] = [None] * len(encoded)
        self._locations: dict[tuple, Location] = {}

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        job = self._decoded[index]
        if job is None:
            target, rule, path, line, *rest = self._encoded[index]
            where = self._locations.get((path, line))
            if where is None:
                where = self._locations[(path, line)] = Location(path, line)
            job = self._decoded[index] = Job(target, rule, where, *rest)
        return job

    def __len__(self) -> int:
        return len(self._encoded)

    def __iter__(self):
        return (self[i] for i in range(len(self._encoded)))

    def _targets_to_places(self) -> dict[str, int]:
        return {encoded[0]: i for i, encoded in enumerate(self._encoded)}   # field 0: target

    def count_with_commands(self) -> int:
        return self._with_commands
