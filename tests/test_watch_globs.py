"""`rlmake build --watch` builds again when a new file matches a glob() of the Rulesfile,
or one it matched goes: the plan would expand differently, though no watched file
changed. The outputs rlmake writes, and files no glob matches, start no build."""

from __future__ import annotations

import pytest
from buildkit import kill_group
from test_watch import DEADLINE, count, holds, wait_until

RULES = """
rules:
  all.txt:
    deps: ["{{ glob('parts/*.txt') }}"]
    command: "cat {{ deps | join(' ') }} > all.txt"
"""


@pytest.mark.integration
def test_a_new_glob_match_builds_again_and_an_unmatched_file_does_not(fresh_proj):
    proj = fresh_proj
    proj.rules(RULES)
    proj.write("parts/a.txt", "a\n")
    process = proj.start_logged("watch", "--watch")
    try:
        wait_until(lambda: holds(proj, "all.txt", "a\n") and count(proj, "rlmake: watching"),
                   "the first build did not finish", proj)

        proj.write("parts/notes.md", "not matched\n")       # no glob matches it
        proj.write("parts/b.txt", "b\n")                    # a new match
        wait_until(lambda: holds(proj, "all.txt", "a\nb\n"), "no build for a new glob match",
                   proj)
        said = proj.said("watch")
        assert "parts/b.txt" in said and "parts/notes.md changed" not in said, said

        (proj.root / "parts" / "a.txt").unlink()            # a match goes
        wait_until(lambda: holds(proj, "all.txt", "b\n"), "no build after a match went", proj)
        wait_until(lambda: count(proj, "rlmake: watching") == 3, "no third watch", proj)

        proj.write("parts/other.md", "still not matched\n")
        proj.write("parts/b.txt", "b2\n")                   # a watched source: to see an end
        wait_until(lambda: holds(proj, "all.txt", "b2\n"), "no build after an edit", proj)
        builds = proj.said("watch").count("changed, building")
        assert builds == 3, proj.said("watch")             # b.txt, a.txt gone, b.txt edited
    finally:
        kill_group(process)
        process.wait(timeout=DEADLINE)
