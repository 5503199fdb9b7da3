"""`rlmake build --watch` builds again when a new file matches a glob() of the Rulesfile,
or one it matched goes: the plan would expand differently, though no watched file
changed. The outputs rlmake writes, and files no glob matches, start no build."""

from __future__ import annotations

import re

import pytest
from buildkit import kill_group
from test_watch import DEADLINE, count, holds, wait_until

RULES = """
rules:
  all.txt:
    deps: ["{{ glob('parts/*.txt') }}"]
    command: "cat {{ deps | join(' ') }} > all.txt"
"""


def settled(proj, path: str, text: str, watches: int) -> None:
    """Wait until `path` holds `text` and the watch has said "watching" `watches` times."""
    wait_until(lambda: holds(proj, path, text) and count(proj, "rlmake: watching") == watches,
               f"no build leaving {path} as {text!r} and watching again", proj)


@pytest.mark.integration
def test_a_new_glob_match_builds_again_and_an_unmatched_file_does_not(fresh_proj):
    proj = fresh_proj
    proj.rules(RULES)
    proj.write("parts/a.txt", "a\n")
    process = proj.start_logged("watch", "--watch")
    try:
        # each step waits for its build's "watching" line: a file removed while a
        # build still runs fails that build (an input changed under it), as it should
        settled(proj, "all.txt", "a\n", 1)

        proj.write("parts/notes.md", "not matched\n")       # no glob matches it
        proj.write("parts/b.txt", "b\n")                    # a new match
        settled(proj, "all.txt", "a\nb\n", 2)
        said = proj.said("watch")
        assert "rlmake: parts/b.txt changed, building" in said, said

        (proj.root / "parts" / "a.txt").unlink()            # a match goes
        settled(proj, "all.txt", "b\n", 3)

        proj.write("parts/other.md", "still not matched\n")
        proj.write("parts/b.txt", "b2\n")                   # a watched source: to see an end
        settled(proj, "all.txt", "b2\n", 4)
        changed = re.findall(r"^rlmake: (.*) changed, building$", proj.said("watch"), re.M)
        assert changed == ["parts/b.txt", "parts/a.txt", "parts/b.txt"], proj.said("watch")
    finally:
        kill_group(process)
        process.wait(timeout=DEADLINE)
