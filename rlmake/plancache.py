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
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from stat import S_ISDIR
from struct import error as StructError
from typing import NamedTuple

from rlmake import __version__
from rlmake.hashing import LOWER_HEX, digest_bytes, digest_file, digest_structure
from rlmake.model import Job, JobList, Location, Plan, PlanBody, PlanIndex
from rlmake.paths import glob_files
from rlmake.uptodate import SEEN, Seen

# Also moved when expansion changes what the same Rulesfile gives (11: `%` in a pattern
# rule's depfile), for installs whose files all keep one mtime (_code_fingerprint).
FORMAT = 11
# Each file starts with the CRC-32 of the rest: it finds damage (flipped bits, a torn
# write) before anything is read, at a fifth of a digest's cost on a 10,000-job plan.
# Not a defence against someone who writes .rlmake/ on purpose: they could write anything.
_SEAL_SIZE = 4
# Command lines whose plans are kept. A plan is as big as its project's graph (28 MB for
# 100,000 jobs), and each set of targets or overrides, and each rlmake version, has its
# own; past this many, the least recently used go, and are expanded again if asked for.
PLANS_KEPT = 8
# A plan is marked used by its mtime, refreshed when older than this: not a write per build.
_USE_MARK_SECONDS = 3600
# A temporary file this old was left by an rlmake that died while saving.
_ABANDONED_SECONDS = 3600
# What paths.probe answers: the probed paths are stored in a tuple for each, in this order.
_PROBED_KINDS = ("file", "dir", "missing")
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
    path = os.path.join(state_dir, "plans", name)
    try:
        with open(path, "rb") as stream:
            stored = _unsealed(stream.read())
            written = os.fstat(stream.fileno()).st_mtime
        if stored is None:
            return None
        form, code, files, globs, probes, identity, head, body = marshal.loads(stored)
        if len(probes) != len(_PROBED_KINDS):
            return None
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
    if seen.looked_ns / 1e9 - written > _USE_MARK_SECONDS:
        _mark_used(path)
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
    probes = tuple(tuple(path for path, kind in inputs.probes if kind == wanted)
                   for wanted in _PROBED_KINDS)
    stored = (FORMAT, _code_fingerprint(), inputs.files, inputs.globs, probes, identity,
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
    _prune(directory, name)
    return plan.with_key(identity)


def _mark_used(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass                    # a read-only state directory: the plan may go sooner


def _prune(directory: str, kept: str) -> None:
    """Keep the PLANS_KEPT most recently used plans, `kept` among them, and remove the
    temporary files of saves that died. Only names rlmake gives are ever removed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    if len(names) <= PLANS_KEPT:
        return
    now = time.time()
    plans = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            used = os.stat(path).st_mtime
        except OSError:
            continue
        if _is_plan_name(name) and name != kept:
            plans.append((used, path))
        elif _is_temporary_name(name) and now - used > _ABANDONED_SECONDS:
            _remove(path)
    plans.sort()
    for _, path in plans[:max(0, len(plans) - (PLANS_KEPT - 1))]:
        _remove(path)


def _is_plan_name(name: str) -> bool:
    return len(name) == 40 and not name.strip(LOWER_HEX)


def _is_temporary_name(name: str) -> bool:
    parts = name.split(".")             # ".NAME.PID.tmp"
    return (len(parts) == 4 and parts[0] == "" and _is_plan_name(parts[1])
            and parts[2].isdigit() and parts[3] == "tmp")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _sealed(body: bytes) -> bytes:
    """`body` behind its own checksum, so that a change on disk is found before it is read."""
    return zlib.crc32(body).to_bytes(_SEAL_SIZE, "big") + body


def _unsealed(data: bytes) -> memoryview | None:
    """The body of a sealed file (not copied), or None if it is not the body its checksum
    was taken of."""
    seal, body = data[:_SEAL_SIZE], memoryview(data)[_SEAL_SIZE:]
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
        return _probes_unchanged(directory, probes, seen)
    except OSError:         # a path expansion could stat no longer can: let it say why
        return False
    finally:
        os.close(directory)


def _probes_unchanged(directory: int, probes: tuple[tuple[str, ...], ...],
                      seen: dict[str, bytes]) -> bool:
    """Whether each path is still of the kind expansion found (paths.probe's question),
    keeping the stat of each file in `seen`. A path that was there and is gone raises
    FileNotFoundError (or NotADirectoryError), which `_unchanged` answers with False."""
    files, directories, missing = probes
    for path in missing:
        try:
            os.stat(path, dir_fd=directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return False
    for path in directories:
        if not S_ISDIR(os.stat(path, dir_fd=directory).st_mode):
            return False
    return _still_files(directory, files, seen)


def _still_files(directory: int, files: tuple[str, ...], seen: dict[str, bytes]) -> bool:
    """Whether each of `files` is still no directory, keeping its stat in `seen` as
    `seen_stat` packs it. One plain loop: a 100,000-job plan has 100,000 of them, and
    a call of `seen_stat`, or of os.stat through map(), costs a fifth of the stat."""
    stat, is_dir, pack = os.stat, S_ISDIR, SEEN.pack
    for path in files:
        found = stat(path, dir_fd=directory)
        if is_dir(found.st_mode):
            return False
        try:
            seen[path] = pack(found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns,
                              found.st_ctime_ns)
        except StructError:         # not kept: the snapshot's check stats it anew
            pass
    return True


def _code_fingerprint() -> tuple:
    here = os.path.dirname(__file__)
    return (__version__, *(os.stat(os.path.join(here, name)).st_mtime_ns
                           for name in _EXPANSION_CODE))


def _encode(plan: Plan) -> tuple[tuple, bytes]:
    """The plan as (head, body): what a no-op reads, and the rest, marshalled apart.

    The body's large parts are stored in pieces that are decoded one at a time, when
    first read: the jobs, dependents, sources and outputs in runs of _RUN, and the maps
    from a path or target (producers, readers, each job's place) in buckets of keys in
    sorted order. An edit then decodes the few pieces its jobs and paths are in, not
    the whole plan."""
    jobs = [(job.target, job.rule, job.where.path, job.where.line, job.outputs, job.deps,
             job.commands, job.env, job.description, job.pool, job.depfile, job.phony,
             job.always, job.vars, job.order_only) for job in plan.jobs]
    places = _buckets({job[0]: i for i, job in enumerate(jobs)})
    readers, dependents, always, outputs = plan.index
    head = (plan.requested, plan.pools, plan.hash_setting, plan.count_with_commands())
    body = (_runs(jobs), places, _buckets(dict(plan.producers)), _runs(plan.sources),
            _buckets(dict(readers)), _runs(dependents), always, _runs(outputs))
    return head, marshal.dumps(body)


def _decode_body(body: bytes, with_commands: int) -> PlanBody:
    """Checked by the seal when the file was read, and written by this code (the format
    and code fingerprint matched): it decodes, or rlmake itself is wrong."""
    jobs, places, producers, sources, readers, dependents, always, outputs = \
        marshal.loads(body)
    return (_StoredJobs(_Runs(jobs), _Buckets(places), with_commands), _Buckets(producers),
            _Runs(sources), PlanIndex(_Buckets(readers), _Runs(dependents), always,
                                      _Runs(outputs)))


# Jobs per stored run, and keys per bucket of a stored map: small enough that an edit
# decodes little, large enough that a 100,000-job plan is a few hundred pieces.
_RUN = 256
_BUCKET_SIZE = 256


def _runs(items: Sequence) -> tuple[int, tuple[bytes, ...]]:
    """`items` cut in runs of _RUN, each marshalled, and how many there are."""
    return len(items), tuple(marshal.dumps(tuple(items[start:start + _RUN]))
                             for start in range(0, len(items), _RUN))


class _Parts:
    """Marshalled parts, each decoded on first use and kept."""

    def __init__(self, encoded: tuple[bytes, ...]):
        self._encoded = encoded
        self._decoded: list = [None] * len(encoded)

    def _part(self, number: int):
        part = self._decoded[number]
        if part is None:
            part = self._decoded[number] = marshal.loads(self._encoded[number])
        return part


class _Runs(_Parts, Sequence):
    """A stored sequence whose runs are decoded on first use, each once. Equal to a
    tuple of the same items, as the tuple it stands for would be."""

    def __init__(self, stored: tuple[int, tuple[bytes, ...]]):
        self._count, encoded = stored
        super().__init__(encoded)

    def _run(self, number: int) -> tuple:
        return self._part(number)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._count)))
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        number, place = divmod(index, _RUN)
        return self._run(number)[place]

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        for number in range(len(self._encoded)):
            yield from self._run(number)

    def __contains__(self, item) -> bool:
        return any(item in self._run(number) for number in range(len(self._encoded)))

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None     # type: ignore[assignment]     # as a list's: equal to tuples


def _buckets(mapping: dict) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """`mapping` in key order, cut into buckets of _BUCKET_SIZE keys: the first key of
    each, and each marshalled. Paths of one directory sort together, so the jobs of an
    edit, which mostly read one directory, find their keys in one or two buckets."""
    keys = sorted(mapping)              # the keys alone: sorting (key, value) pairs is 4x
    cuts = range(0, len(keys), _BUCKET_SIZE)
    return (tuple(keys[start] for start in cuts),
            tuple(marshal.dumps({key: mapping[key] for key in keys[start:start + _BUCKET_SIZE]})
                  for start in cuts))


class _Buckets(_Parts, Mapping):
    """A stored map whose buckets are decoded on first use, each once."""

    def __init__(self, stored: tuple[tuple[str, ...], tuple[bytes, ...]]):
        self._firsts, encoded = stored
        super().__init__(encoded)

    def _bucket(self, number: int) -> dict:
        return self._part(number)

    def _holding(self, key) -> dict:
        if not isinstance(key, str):
            return {}
        number = bisect_right(self._firsts, key) - 1
        return self._bucket(number) if number >= 0 else {}

    def __getitem__(self, key):
        return self._holding(key)[key]

    def get(self, key, default=None):
        return self._holding(key).get(key, default)

    def __contains__(self, key) -> bool:
        return key in self._holding(key)

    def __iter__(self):
        for number in range(len(self._encoded)):
            yield from self._bucket(number)

    def __len__(self) -> int:
        return sum(len(self._bucket(number)) for number in range(len(self._encoded)))


class _StoredJobs(JobList):
    """A stored plan's jobs, each decoded the first time something reads it: a no-op
    build never does, and an edit decodes only the runs of jobs it touches."""

    def __init__(self, encoded: _Runs, places: Mapping[str, int], with_commands: int):
        super().__init__(())
        self._encoded = encoded
        self._places = places
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

    def _targets_to_places(self) -> Mapping[str, int]:
        return self._places

    def count_with_commands(self) -> int:
        return self._with_commands
