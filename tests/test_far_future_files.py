"""Files whose stat SQLite cannot hold (dated after 2262: nanoseconds past 2**63) build
like any other, without a traceback: their digests are not remembered by stat, so they
are read on every build, and an edit to one is still seen."""

from __future__ import annotations

import os

from engine import Engine

YEAR_2300_NS = 10_413_792_000 * 10**9       # 2300-01-01, past what a signed 64-bit ns holds


def test_a_source_dated_after_2262_builds_and_its_edits_are_seen(tmp_path):
    engine = Engine(tmp_path / "proj")
    engine.write("Rulesfile.yaml", "rules:\n  out: {deps: [in.txt], command: cp in.txt out}\n")
    engine.write("in.txt", "a\n")
    os.utime(engine.root / "in.txt", ns=(YEAR_2300_NS, YEAR_2300_NS))
    assert os.stat(engine.root / "in.txt").st_mtime_ns >= 1 << 63
    assert engine.build().ran == ["out"]
    assert engine.build().ran == []
    engine.write("in.txt", "b\n")
    os.utime(engine.root / "in.txt", ns=(YEAR_2300_NS, YEAR_2300_NS))
    assert engine.build().ran == ["out"]
    assert engine.read("out") == "b\n"
