"""A header written an instant before a job starts never counts as written while it ran,
and one written after it started always does, whichever clock the kernel stamped it from."""

from __future__ import annotations

import os

from rlmake import jobfiles


def vouch_for(path, recorded):
    """The scheduler's check: a job that finished before wrote it, and its stat is as then."""
    return lambda name: jobfiles.signature(str(path)) == recorded


def test_a_header_written_just_before_a_job_started_never_looks_written_while_it_ran(tmp_path):
    """What order-only deps are for: the generator writes the header, the object starts
    right after. On kernels with fine-grained ctimes (Linux 6.13+ multigrain timestamps:
    a file whose stat was read gets a precise ctime on its next change) that ctime can be
    later than a coarse clock read an instant after, and with coarse stamps it can be a
    tick earlier than the precise start: the header's stat, as recorded when its
    generator finished, settles which."""
    header = tmp_path / "gen.h"
    for attempt in range(50):
        header.write_text(f"{attempt}\n")
        os.stat(header)                     # rlmake hashes it: its next ctime is precise
        header.write_text(f"{attempt}!\n")
        recorded = jobfiles.signature(str(header))
        started = jobfiles.watch(str(tmp_path), (), {}, lambda path, digest: None)
        assert jobfiles.written_while_running(str(tmp_path), started, ["gen.h"],
                                              vouch_for(header, recorded)) is None


def test_a_header_written_after_the_job_started_is_always_caught(tmp_path):
    """Its ctime may come out a coarse tick before the job's precise start; unvouched for,
    or with its stat changed since its generator finished, it fails the job."""
    header = tmp_path / "gen.h"
    header.write_text("old\n")
    recorded = jobfiles.signature(str(header))
    for attempt in range(50):
        started = jobfiles.watch(str(tmp_path), (), {}, lambda path, digest: None)
        header.write_text(f"new {attempt}\n")
        for settled in (vouch_for(header, recorded), lambda name: False):
            problem = jobfiles.written_while_running(str(tmp_path), started, ["gen.h"], settled)
            assert problem is not None and "changed while the command ran" in problem
