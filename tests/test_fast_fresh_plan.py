"""A fresh `build -n` of a large project, made faster without changing its answer.

Each shortcut is held to the slower way it replaces: a path that `_is_normal` passes is
what `normalise` gives; a pattern's pre-split candidates find the stem the old match
found; the index made in one pass is the index made the old way; a dry run with no
state makes no plan key, and takes the sources that expansion just found, instead of
looking at them again; the cycle collector is off while a plan is expanded and surveyed,
and on again after.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rlmake.model import Job, Location, PlanIndex
from rlmake.paths import normalise
from rlmake.rules import expand
from rlmake.rules.expand import Expander

SETTINGS = settings(max_examples=400, deadline=None, database=None)

# Paths made of the characters that matter to normalising
paths = st.text(alphabet="a./", max_size=10) | st.text(alphabet="ab./", min_size=1, max_size=10)


@SETTINGS
@given(path=paths)
def test_a_path_taken_as_normal_is_what_normalise_gives(path):
    if expand._is_normal(path):
        assert normalise(path, "/project") == path


@SETTINGS
@given(path=paths | st.just("/project/a/../b"))
def test_the_expanders_norm_is_normalise(path):
    expander = Expander.__new__(Expander)           # only what _norm needs
    expander._normalised, expander.project_dir = {}, "/project"
    assert expander._norm(path) == normalise(path, "/project")


def old_match(pattern: str, path: str) -> str | None:
    """The match as expand.py made it before candidates were split once per pattern."""
    prefix, _, suffix = pattern.partition("%")
    if len(path) > len(prefix) + len(suffix) and path.startswith(prefix) \
            and path.endswith(suffix):
        return path[len(prefix):len(path) - len(suffix)]
    return None


@SETTINGS
@given(patterns=st.lists(st.text(alphabet="ab%./", max_size=6).map(lambda p: p.replace(
    "%", "", p.count("%") - 1) if p.count("%") > 1 else p + ("%" if "%" not in p else "")),
    min_size=1, max_size=3), path=st.text(alphabet="ab./", max_size=8))
def test_the_stem_is_the_one_the_old_match_found(patterns, path):
    candidates = tuple(expand._split_pattern(pattern) for pattern in patterns)
    old = next((stem for pattern in patterns
                if (stem := old_match(pattern, path)) is not None), None)
    assert expand._stem(candidates, path) == old


def old_index(jobs: list[Job]) -> PlanIndex:
    """PlanIndex.of as it was written before it was made faster."""
    readers: dict[str, list[int]] = {}
    waiters: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        for path in (*job.deps, *job.outputs):
            readers.setdefault(path, []).append(i)
        for path in job.order_only:
            waiters.setdefault(path, []).append(i)
    dependents = []
    for job in jobs:
        made = (job.target, *job.outputs)
        found = {reader for path in made for reader in readers.get(path, ())}
        found.update(waiter for path in made for waiter in waiters.get(path, ()))
        dependents.append(tuple(sorted(i for i in found if jobs[i].target != job.target)))
    return PlanIndex({path: tuple(found) for path, found in readers.items()},
                     tuple(dependents), tuple(i for i, job in enumerate(jobs) if job.always),
                     tuple(path for job in jobs for path in job.outputs))


NAMES = [f"p{n}" for n in range(8)]


@st.composite
def job_lists(draw) -> list[Job]:
    """Jobs with distinct targets (as in any plan) and deps, outputs and order-only deps
    among a few names, repeats allowed."""
    targets = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    names = st.lists(st.sampled_from(NAMES), max_size=4).map(tuple)
    jobs = []
    for target in targets:
        writes = draw(st.booleans())
        more = draw(names)
        jobs.append(Job(target, "r", Location("Rulesfile.yaml", 1),
                        (target, *more) if writes else (), draw(names),
                        ("c",) if writes else (), always=draw(st.booleans()),
                        order_only=draw(names)))
    return jobs


@SETTINGS
@given(jobs=job_lists())
def test_the_index_is_the_one_the_old_way_made(jobs):
    assert PlanIndex.of(jobs) == old_index(jobs)
