"""What one run did to the files around it, judged by their stat before and after.

A job that exits 0 has made its outputs only if it created or changed them (or
they still hold bytes an earlier run of it wrote: write-if-changed generators);
it counts only if none of the inputs it was keyed on changed while it ran; and a
job that fails or is interrupted loses every output it created or changed.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import time
from typing import Callable, Iterable, NamedTuple

from rlmake.hashing import is_digest
from rlmake.model import DirIdentity

Signature = tuple[int, int, int, int]       # inode, size, mtime, ctime


def signature(path: str) -> Signature | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


class Watch(NamedTuple):
    """The files of one job as they were when it started."""

    outputs: dict[str, Signature | None]
    inputs: dict[str, tuple[str, Signature | None]]     # path -> (digest keyed on, stat)
    since_ns: int = 0           # the job's start, on the clock file timestamps are taken from


def watch(project_dir: str, outputs: tuple[str, ...], inputs: dict[str, str],
          hashed_as: Callable[[str, str], Signature | None]) -> Watch:
    """`hashed_as(path, digest)`: the stat `path` had when it was read and found to hold
    `digest`, or None if unknown. An input's stat is taken from then, not from the
    job's start: a job may wait in the queue, and an edit made meanwhile must count as
    one made while it ran (None makes the check read the file again)."""
    def at(path: str) -> Signature | None:
        return signature(os.path.join(project_dir, path))
    return Watch({path: at(path) for path in outputs},
                 {path: (digest, hashed_as(path, digest)) for path, digest in inputs.items()},
                 _file_clock_ns())


def _file_clock_ns() -> int:
    """Now, on the precise clock. A file written after this moment may still get an
    earlier ctime, by up to one tick of the coarse clock kernels stamp most writes with:
    see written_while_running."""
    return time.time_ns()


def _coarse_tick_ns() -> int:
    try:
        return max(1, int(time.clock_getres(_CLOCK_REALTIME_COARSE) * 1e9))
    except OSError:
        return 10_000_000           # no coarse clock: allow a 10 ms tick


_CLOCK_REALTIME_COARSE = 5      # Linux; the time module does not name it
_TICK_NS = _coarse_tick_ns()


def unwritten_output(project_dir: str, started: Watch, digest_of: Callable[[str], str | None],
                     wrote_before: Callable[[str, str], bool]) -> str | None:
    """Why the outputs of a job that exited 0 cannot be taken as made by it, or None.

    `wrote_before(path, digest)`: an earlier successful run of the same job wrote it."""
    for path, before in started.outputs.items():
        digest = digest_of(path)        # raises UnreadableFile for what cannot be read
        if digest is None:
            return f"the command exited 0 but did not write output '{path}'"
        # A content digest comes only from reading a file: no directory has one (a stat
        # saved per job); anything else ("dir", a --hash fast digest) is looked at.
        if not is_digest(digest) and os.path.isdir(os.path.join(project_dir, path)):
            return (f"output '{path}' is a directory: rlmake tracks files; name the files "
                    "it holds as outputs, or pack the directory into one file")
        if before is not None and signature(os.path.join(project_dir, path)) == before \
                and not wrote_before(path, digest):
            return (f"the command exited 0 but did not write output '{path}' (the file "
                    "there was not written by this rule)")
    return None


def changed_input(project_dir: str, started: Watch,
                  digest_after: Callable[[str], str | None]) -> str | None:
    """The first input written to since the job was keyed on it, as a sentence, or None.

    A stat that changed counts even when the bytes are back as they were: the command
    may have read them in between (an edit undone while it ran). Only an input whose
    stat was not known when it was hashed is judged by its bytes."""
    for path, (digest, before) in started.inputs.items():
        now = signature(os.path.join(project_dir, path))
        if now == before:
            continue
        if before is not None or digest_after(path) != digest:
            return (f"input '{path}' changed while the command ran, so its outputs may "
                    "mix old and new content; they were removed and the job will run again")
    return None


def written_while_running(project_dir: str, started: Watch, listed: Iterable[str],
                          settled_before: Callable[[str], bool]) -> str | None:
    """The first file a depfile listed that was written after the job started, as a
    sentence, or None. For files the job was not keyed on (a depfile's first listing):
    they were never hashed before, so only their ctime, which no one can set back, can
    say the command may have read other bytes than those recorded now.

    A ctime after the start is a write after it. One within a coarse tick before it is
    either: a kernel stamps most writes from its coarse clock, which lags, and Linux
    stamps some precisely. Such a file is taken as written before only when
    `settled_before(path)` vouches for it: a job of this build that finished before this
    one started wrote it, and its stat has not changed since (a generated header)."""
    for path in listed:
        if path in started.inputs or path in started.outputs:
            continue                # checked by content, or the job's own
        try:
            changed = os.stat(os.path.join(project_dir, path)).st_ctime_ns
        except OSError:
            continue
        if changed > started.since_ns or (changed > started.since_ns - _TICK_NS
                                          and not settled_before(path)):
            return (f"'{path}', which its depfile lists, changed while the command ran, so "
                    "its outputs may mix old and new content; they were removed and the job "
                    "will run again (if the command writes that file itself, name it in the "
                    "rule's outputs)")
    return None


def remove_changed_outputs(project_dir: str, started: Watch) -> list[str]:
    """Delete every output the job created or changed: it must never pass for a good one.
    Returns the paths removed."""
    removed = []
    for path, before in started.outputs.items():
        full = os.path.join(project_dir, path)
        now = signature(full)
        if now is None or now == before:
            continue
        try:
            os.remove(full)
            removed.append(path)
        except OSError:
            pass                    # a directory, or gone already: nothing rlmake may delete
    return removed


_GET_GENERATION = 0x80000000 | (struct.calcsize("l") << 16) | (ord("v") << 8) | 1   # FS_IOC_GETVERSION


def directory_identity(full: str) -> DirIdentity | None:
    """Which directory is at `full` (not a symlink to one); None if none is."""
    try:
        status = os.lstat(full)
    except OSError:
        return None
    if not stat.S_ISDIR(status.st_mode):
        return None
    return (status.st_ino, _generation(full))


def _generation(full: str) -> int | None:
    try:
        fd = os.open(full, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # the kernel writes an int or a long there: either way the same for one inode
        generation: int = struct.unpack("l", fcntl.ioctl(fd, _GET_GENERATION, bytes(8)))[0]
        return generation
    except OSError:                 # a file system that keeps none (or not Linux)
        return None
    finally:
        os.close(fd)


def identified_dirs(project_dir: str, made: Iterable[str]) -> list[tuple[str, DirIdentity]]:
    """(path, identity) of each of these directories that is one now (not a symlink): what
    `clean` checks before it removes one, so that a directory someone made in its place
    later is never taken for rlmake's."""
    found = []
    for path in made:
        identity = directory_identity(os.path.join(project_dir, path))
        if identity is not None:
            found.append((path, identity))
    return found


def missing_dirs(project_dir: str, paths: Iterable[str], known: set[str]) -> list[str]:
    """The directories that must be made for `paths` (project paths), every level of
    them, for `clean` to remove once empty; none that existed before. `known`: the
    directories already looked at in this build, which this adds to."""
    missing = []
    for path in paths:
        if os.path.isabs(path) or path.startswith(".."):
            continue                # outside the project: `clean` never goes there
        directory = os.path.dirname(path)
        while directory and directory not in known:
            known.add(directory)
            if os.path.isdir(os.path.join(project_dir, directory)):
                break
            missing.append(directory)
            directory = os.path.dirname(directory)
    return missing
