"""What the scheduler checks of a job that exited 0, with fewer system calls: an output
that is a directory still fails the job in either hash mode, and a header a job of the
same build made is vouched for (its depfile's first listing) only while its stat is
the one it had when it was hashed after its generator ended. In-process builds."""

from __future__ import annotations

import io

import pytest
from engine import Engine, Recording
from test_order_only import THROUGH_DEPFILE     # obj's depfile lists gen.h, made first

from rlmake import jobfiles
from rlmake.model import Job, Outcome, Status
from rlmake.reporters.console import ConsoleReporter

HASH_MODES = ("content", "fast")


def with_mode(rules: str, mode: str) -> str:
    return rules if mode == "content" else "vars:\n  rlmake_hash: fast\n" + rules


@pytest.mark.parametrize("mode", HASH_MODES)
def test_an_output_that_is_a_directory_fails_the_job_in_either_mode(tmp_path, mode):
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", with_mode(
        "rules:\n  results:\n    deps: [in.txt]\n"
        "    command: mkdir -p results && cp in.txt results/a.txt\n", mode))
    engine.write("in.txt", "x\n")
    built = engine.build("results")
    assert built.status == "failed"
    assert "output 'results' is a directory" in (built.outcomes["results"].error or "")
    assert engine.read("results/a.txt") == "x\n"


@pytest.mark.parametrize("mode", HASH_MODES)
@pytest.mark.parametrize("touched", [False, True])
def test_a_header_made_earlier_in_the_build_is_vouched_for_only_while_untouched(
        tmp_path, monkeypatch, mode, touched):
    """Every ctime before the job's start is taken as within a coarse tick of it (the
    case where only the vouching decides). A header its generator wrote is vouched for;
    one rewritten after its generator ended and before the job started is not."""
    monkeypatch.setattr(jobfiles, "_TICK_NS", 1 << 62)
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", with_mode(THROUGH_DEPFILE, mode))
    engine.write("obj.c", "body\n")
    engine.write("version", "1\n")
    finished = Recording.job_finished

    def job_finished(self: Recording, outcome: Outcome) -> None:
        finished(self, outcome)
        if touched and outcome.job.target == "gen.h":     # before obj starts
            (tmp_path / "gen.h").write_text("2\n")
    monkeypatch.setattr(Recording, "job_finished", job_finished)
    built = engine.build("obj")
    assert built.ran == ["gen.h", "obj"]
    if touched:
        assert built.outcomes["obj"].status is Status.FAILED
        assert "changed while the command ran" in (built.outcomes["obj"].error or "")
    else:
        assert built.status == "ok", built.outcomes["obj"].error


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def isatty(self) -> bool:
        return False


def test_a_progress_line_is_one_write():
    out = CountingStream()
    reporter = ConsoleReporter(out, io.StringIO(), status_line=False)
    reporter.build_started(2)
    job = Job("a.o", "a.o", None, ("a.o",), ("a.c",), ("cc -c a.c",))  # type: ignore[arg-type]
    reporter.job_finished(Outcome(job, Status.DONE))
    reporter.job_finished(Outcome(job._replace(commands=("cc -c b.c",)), Status.DONE,
                                  output="warning: b\n"))
    assert out.getvalue() == "[1/2] cc -c a.c\n[2/2] cc -c b.c\nwarning: b\n"
    assert out.writes == 3
