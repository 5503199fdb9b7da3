"""Staged Dask builds send small files in Dask's own messages, larger ones through the store.

In-process: the client refuses an output whose inline bytes do not match their digest
(and leaves the old file and no temporary), the worker refuses such an input, and a
worker sends back small outputs inline and puts only larger ones in the store.
On a real cluster (test_dask_executor's): a staged build of small and large inputs and
outputs (above the size limit, and more small files than one task carries) is byte
for byte, and mode for mode, what a local build makes; and small sources are never
uploaded to the store.
"""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import pytest

from rlmake.cache.local import LocalStore
from rlmake.executors import dask as dask_executor
from rlmake.executors.dask import restore_output
from rlmake.hashing import digest_bytes, digest_file
from test_dask_executor import dask_args, rlmake

SMALL = b"small output\n"


class CountingStore(LocalStore):
    """A directory store that counts what is asked of it."""

    def __init__(self, root: str):
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def put_blob(self, digest: str, source: str) -> None:
        self.calls.append(("put_blob", digest))
        super().put_blob(digest, source)

    def fetch_blob(self, digest: str, destination: str) -> bool:
        self.calls.append(("fetch_blob", digest))
        return super().fetch_blob(digest, destination)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".rlmake-staged-")]


# --- the client: outputs that came back inline ---------------------------------------------

def test_an_inline_output_that_does_not_match_its_digest_is_refused(tmp_path):
    final = tmp_path / "out" / "a.txt"
    final.parent.mkdir()
    final.write_bytes(b"the previous build's\n")
    store = CountingStore(str(tmp_path / "store"))
    corrupted = SMALL.replace(b"small", b"smell")
    assert not restore_output(str(final), digest_bytes(SMALL), 0o644, corrupted, store)
    assert final.read_bytes() == b"the previous build's\n"
    assert leftovers(final.parent) == []
    assert store.calls == []            # inline bytes are never looked up in the store


def test_an_inline_output_that_matches_is_put_in_place_with_its_mode(tmp_path):
    final = tmp_path / "new" / "dir" / "run.sh"
    store = CountingStore(str(tmp_path / "store"))
    assert restore_output(str(final), digest_bytes(SMALL), 0o755, SMALL, store)
    assert final.read_bytes() == SMALL
    assert stat.S_IMODE(final.stat().st_mode) == 0o755
    assert leftovers(final.parent) == [] and store.calls == []


def test_an_output_missing_from_the_store_is_refused(tmp_path):
    final = tmp_path / "a.txt"
    store = CountingStore(str(tmp_path / "store"))
    assert not restore_output(str(final), digest_bytes(SMALL), 0o644, None, store)
    assert not final.exists() and leftovers(tmp_path) == []
    assert store.calls == [("fetch_blob", digest_bytes(SMALL))]


# --- the worker: inputs that came inline, outputs sent back --------------------------------

def test_the_worker_refuses_an_inline_input_that_does_not_match_its_digest(tmp_path):
    store = CountingStore(str(tmp_path / "store"))
    destination = tmp_path / "input.txt"
    assert not dask_executor._stage_input(store, digest_bytes(SMALL), b"altered\n",
                                          str(destination))
    assert not destination.exists() and store.calls == []
    assert dask_executor._stage_input(store, digest_bytes(SMALL), SMALL, str(destination))
    assert destination.read_bytes() == SMALL and store.calls == []


def test_the_worker_sends_small_outputs_inline_and_large_ones_through_the_store(tmp_path):
    store = CountingStore(str(tmp_path / "store"))
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(SMALL)
    large.write_bytes(os.urandom(dask_executor._INLINE_FILE_BYTES + 1))
    budget = dask_executor._INLINE_TASK_BYTES

    assert dask_executor._send_back(store, str(small), budget) == \
        (digest_bytes(SMALL), stat.S_IMODE(small.stat().st_mode), SMALL)
    assert store.calls == []
    digest = digest_file(str(large))
    assert dask_executor._send_back(store, str(large), budget)[::2] == (digest, None)
    assert store.calls == [("put_blob", digest)] and store.has_blob(digest)
    # a small file past what the job may still send inline goes through the store too
    assert dask_executor._send_back(store, str(small), len(SMALL) - 1)[2] is None
    assert store.calls[-1] == ("put_blob", digest_bytes(SMALL))


# --- on a real cluster ----------------------------------------------------------------------

def _q(text: str) -> str:
    return json.dumps(text)                      # a YAML double-quoted scalar


KIB = 1024
PART = 200 * KIB            # under the size limit; twelve of them exceed one task's share
PARTS = 12


def write_mixed(root: Path) -> None:
    """Small and large sources, intermediates and outputs; a job reading more small files
    than one task carries and one writing more than one result carries; an executable
    output; a depfile."""
    assert PART <= dask_executor._INLINE_FILE_BYTES < 700 * KIB
    assert PART * PARTS > dask_executor._INLINE_TASK_BYTES
    rnd = random.Random(7)
    (root / "many").mkdir(parents=True)
    (root / "small.txt").write_text("small source\n" * 10)
    (root / "big.bin").write_bytes(rnd.randbytes(700 * KIB))
    for i in range(PARTS):
        (root / f"many/m{i}.bin").write_bytes(rnd.randbytes(PART))
    many = [f"many/m{i}.bin" for i in range(PARTS)]
    cut = "; ".join(f"tail -c +{i * PART + 1} joined.bin | head -c {PART} > parts/p{i}.bin"
                    for i in range(PARTS))
    rules = {
        "up.txt": (["small.txt"], "tr a-z A-Z < small.txt > up.txt", {}),
        "twice.bin": (["big.bin"], "cat big.bin big.bin > twice.bin", {}),
        "head.txt": (["big.bin", "up.txt"],
                     "head -c 1000 big.bin | od -An -tx1 > head.txt; cat up.txt >> head.txt", {}),
        "joined.bin": (many, f"cat {' '.join(many)} > joined.bin", {}),
        "parts/p0.bin": (["joined.bin"], f"mkdir -p parts; {cut}",
                         {"outputs": [f"parts/p{i}.bin" for i in range(1, PARTS)]}),
        "run.sh": (["up.txt"], "printf '#!/bin/sh\\ncat up.txt\\n' > run.sh; chmod 755 run.sh",
                   {}),
        "dep.txt": (["small.txt"], "cp small.txt dep.txt; echo 'dep.txt: small.txt' > dep.d",
                    {"depfile": "dep.d"}),
    }
    lines = ["default: all", "rules:"]
    for target, (deps, command, extra) in rules.items():
        lines += [f"  {_q(target)}:", f"    deps: [{', '.join(map(_q, deps))}]",
                  f"    command: {_q(command)}"]
        lines += [f"    {key}: {json.dumps(value)}" for key, value in extra.items()]
    lines += ["  all:", f"    deps: [{', '.join(map(_q, rules))}]"]
    (root / "Rulesfile.yaml").write_text("\n".join(lines) + "\n")


def files_and_modes(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".rlmake" not in p.relative_to(root).parts}


@pytest.fixture
def cluster(dask_cluster):
    """The cluster shared with the other Dask tests (conftest.py)."""
    return dask_cluster


@pytest.mark.integration
def test_small_and_large_files_staged_come_out_as_a_local_build_makes_them(tmp_path, cluster):
    reference, project = tmp_path / "local", tmp_path / "staged"
    write_mixed(reference)
    write_mixed(project)
    rlmake(reference, "build", "-j2", "--executor", "local")
    result = rlmake(project, "build", "-j2", *dask_args(cluster, "staged", tmp_path / "store"))
    assert "files staged through" in result.stderr, result.describe()
    expected = files_and_modes(reference)
    assert "parts/p11.bin" in expected and "dep.d" in expected
    assert expected["run.sh"][1] == 0o755
    assert files_and_modes(project) == expected


@pytest.mark.integration
def test_small_sources_are_not_uploaded_to_the_store(tmp_path, cluster):
    """Sources are no job's output, so the artifact cache never stores them: a blob of
    one in the store could only have been staged there. The large one must be."""
    project, store = tmp_path / "proj", tmp_path / "store"
    project.mkdir()
    sources = {f"s{i}.txt": f"source {i}\n".encode() * (i + 1) for i in range(6)}
    sources["large.bin"] = random.Random(3).randbytes(dask_executor._INLINE_FILE_BYTES + 1)
    lines = ["default: all", "rules:"]
    for name in sources:
        (project / name).write_bytes(sources[name])
        lines += [f"  out/{name}:", f"    deps: [{name}]",
                  f"    command: mkdir -p out; tr a-z A-Z < {name} > out/{name}"]
    lines += ["  all:", f"    deps: [{', '.join(f'out/{name}' for name in sources)}]"]
    (project / "Rulesfile.yaml").write_text("\n".join(lines) + "\n")
    rlmake(project, "build", "-j2", *dask_args(cluster, "staged", store))
    for name, data in sources.items():
        assert (project / "out" / name).read_bytes() == data.upper()

    def in_store(data: bytes) -> bool:
        digest = digest_bytes(data)
        return (store / "cas" / digest[:2] / digest).is_file()

    assert in_store(sources["large.bin"]), "the large source was not staged at all"
    assert [name for name, data in sources.items() if name != "large.bin" and in_store(data)] \
        == []
