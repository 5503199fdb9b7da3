"""A stored plan's body is kept in pieces decoded on first use (plancache.py): runs of
jobs, and the maps from a path or target in buckets of keys in sorted order. A build
after one edit decodes the few pieces it reads; everything read from them must be what
the plan expanded anew says. In-process: planning only, nothing is built."""

from __future__ import annotations

import pytest

from conftest import write_project
from rlmake import plancache
from rlmake.project import Project

RULES = """
    default: all
    rules:
      all:
        deps: ["{{ glob('src/**/*.c') | map('replace', 'src/', 'obj/', 1)
                  | map('replace', '.c', '.o') | list }}"]
      "obj/%.o": {deps: ["src/%.c"], command: "cp {{ dep }} {{ target }}"}
    """
SOURCES = {f"src/d{d}/f{n:03}.c": f"{d} {n}\n" for d in range(4) for n in range(150)}


@pytest.fixture
def plans(tmp_path):
    """The plan expanded anew, and the same plan as stored."""
    write_project(tmp_path, RULES, SOURCES)
    fresh = Project(str(tmp_path)).plan()
    name = plancache.entry_name(str(tmp_path / "Rulesfile.yaml"), [], {})
    stored = plancache.load(str(tmp_path / ".rlmake"), name, str(tmp_path))
    assert stored is not None and stored.key == fresh.key
    return fresh, stored


def test_the_stored_plan_reads_as_the_plan_expanded_anew(plans):
    fresh, stored = plans
    assert len(stored.jobs) == len(fresh.jobs) == 601
    assert list(stored.jobs) == list(fresh.jobs)
    assert stored.jobs[-1] == fresh.jobs[-1] and stored.jobs[3:6] == list(fresh.jobs[3:6])
    with pytest.raises(IndexError):
        stored.jobs[601]
    with pytest.raises(IndexError):
        stored.jobs[-602]
    assert dict(stored.producers) == dict(fresh.producers)
    assert dict(stored.index.readers) == dict(fresh.index.readers)
    assert dict(stored.jobs.positions()) == dict(fresh.jobs.positions())
    assert stored.index.dependents == fresh.index.dependents
    assert stored.sources == fresh.sources and stored.index.outputs == fresh.index.outputs
    assert fresh.sources[5] in stored.sources and "obj/d0/f000.o" not in stored.sources
    assert stored.index.dependents[-1] == fresh.index.dependents[-1]
    assert stored.index.dependents[2:5] == fresh.index.dependents[2:5]
    for missing in ("", "src", "obj/d9/f000.o", "zzz", "\udcff", 7, None):
        assert stored.producers.get(missing) is None and missing not in stored.index.readers
    with pytest.raises(KeyError):
        stored.jobs.positions()["nothing.o"]


def test_an_edit_decodes_a_few_pieces_of_the_body(plans):
    _, stored = plans
    # what a build after editing src/d2/f100.c reads: that path's readers, the jobs
    # they make stale and their places, the producers of their deps
    readers = stored.index.readers.get("src/d2/f100.c")
    assert readers is not None
    dirty = [readers[0], *stored.index.dependents[readers[0]]]
    for i in dirty:
        assert stored.index_of(stored.jobs[i].target) == i
    compile_job = stored.jobs[readers[0]]
    assert compile_job.target == "obj/d2/f100.o"
    assert [stored.producers.get(dep) for dep in compile_job.deps] == [None]
    assert stored.producers.get("obj/d2/f100.o") == "obj/d2/f100.o"
    jobs = stored.jobs
    for stored_part in (jobs._encoded, stored.index.dependents, stored.producers,
                        stored.index.readers, jobs.positions()):
        decoded = sum(piece is not None for piece in stored_part._decoded)
        assert 1 <= decoded <= 2 < len(stored_part._decoded), (decoded, stored_part)
    # what only a new snapshot of the whole plan reads is not decoded at all
    for unread in (stored.sources, stored.index.outputs):
        assert not any(piece is not None for piece in unread._decoded)
