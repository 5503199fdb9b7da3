"""A header written an instant before a job starts never counts as written while it ran."""

from __future__ import annotations

import os

from rlmake import jobfiles


def test_a_header_written_just_before_a_job_started_never_looks_written_while_it_ran(tmp_path):
    """What order-only deps are for: the generator writes the header, the object starts
    right after. On kernels with fine-grained ctimes (Linux 6.13+ multigrain timestamps:
    a file whose stat was read gets a precise ctime on its next change) that ctime is
    later than the coarse clock read an instant after, so the job's start must be taken
    on the precise clock, or the object fails as if the header changed while it ran."""
    header = tmp_path / "gen.h"
    for attempt in range(50):
        header.write_text(f"{attempt}\n")
        os.stat(header)                     # rlmake hashes it: its next ctime is precise
        header.write_text(f"{attempt}!\n")
        started = jobfiles.watch(str(tmp_path), (), {}, lambda path, digest: None)
        assert jobfiles.written_while_running(str(tmp_path), started, ["gen.h"]) is None
