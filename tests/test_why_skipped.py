"""`why` on a job the dry-run survey never decided: it stopped at a job that cannot be
built (a dep that is not a regular file) before it reached this one. Found while typing
explain.py: the outcome of such a job has no decision, and `why` raised on it."""

from __future__ import annotations

import os

from buildkit import build_env, run_in_process

RULES = """\
rules:
  a.txt:
    deps: [bad.src]
    command: cat bad.src > a.txt
  b.txt:
    deps: [b.src]
    command: cat b.src > b.txt
  c.txt:
    deps: [b.txt]
    command: cat b.txt > c.txt
"""


def test_why_names_a_job_the_survey_never_reached(tmp_path):
    (tmp_path / "Rulesfile.yaml").write_text(RULES)
    (tmp_path / "b.src").write_text("b\n")
    os.mkfifo(tmp_path / "bad.src")
    status, out, err = run_in_process(["why", "a.txt", "c.txt"], tmp_path, build_env())
    assert status == 0, out + err
    assert "a.txt: cannot be built: cannot read 'bad.src'" in out
    assert "c.txt: not reached: the next build stops at a job that cannot be built" in out
