"""A recorded run is stored as exactly the rows rlmake has always stored: the encoders
made once per process write what json.dumps writes, and record_run's one-statement
insert of a run's few files keeps their rows and their order."""

from __future__ import annotations

import json

import pytest

from rlmake import state as state_module
from rlmake.model import (JobInputs, Reason, ReasonKind, RunRecord, Status, StoredBy)
from rlmake.state import StateDB

D1 = "0123456789abcdef0123456789abcdef01234567"
D2 = "89abcdef0123456789abcdef0123456789abcdef"

VALUES = [
    {}, [], (), "", None, 0, -1, 2 ** 70, 1.5, 1e300, float("inf"), True, False,
    {"a": 1, "b": [1, 2, (3, 4)], "c": None, "é": "ü\u2603", "\udcff": "\udcfe"},
    ["tab\there", "quote\"back\\slash", "nl\n", "\x00\x1f\x7f", "日本語"],
    {"commands": ("cc -c a.c",), "env": {"X": "1"}, "outputs": ("a.o",),
     "deps": (("a.c", D1), ("gen.h", None)), "depfile_deps": {"h.h": D2}, "vars": {}},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_encoders_write_what_json_dumps_writes(value):
    assert state_module._dumps(value) == json.dumps(value)
    assert state_module._dumps_compact(value) == json.dumps(value, separators=(",", ":"))


def test_without_the_c_encoder_the_encoders_still_write_what_json_dumps_writes(monkeypatch):
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    plain, compact = state_module._json_encoder((", ", ": ")), \
        state_module._json_encoder((",", ":"))
    for value in VALUES:
        assert plain(value) == json.dumps(value)
        assert compact(value) == json.dumps(value, separators=(",", ":"))


def test_an_encoder_refuses_what_json_dumps_refuses():
    with pytest.raises(TypeError):
        state_module._dumps({"a": object()})


def _old_rows(run: RunRecord, run_id: int):
    """The rows of one run as record_run wrote them before it was made faster."""
    inputs = json.dumps({"commands": list(run.inputs.commands), "env": run.inputs.env,
                         "outputs": list(run.inputs.outputs),
                         "deps": [list(p) for p in run.inputs.deps],
                         "depfile_deps": run.inputs.depfile_deps, "vars": run.inputs.vars},
                        separators=(",", ":"))
    runs = (run.execution, run.target, run.rule, run.key, run.status.value,
            json.dumps([reason.to_json() for reason in run.reasons]), run.started,
            run.ended, run.exit_code, inputs, run.output_tail, run.cache_source,
            None if run.same_outputs is None else int(run.same_outputs),
            None if run.stored_by is None else json.dumps(run.stored_by.to_json()))
    files = ([(run_id, path, digest, "r") for path, digest in run.reads]
             + [(run_id, path, digest, "w") for path, digest in (*run.writes, *run.side_files)])
    jobs = None
    if run.status in (Status.DONE, Status.RESTORED):
        jobs = (run.target, run_id, run.key, json.dumps(dict(run.writes)),
                json.dumps(run.inputs.depfile_deps), inputs)
    return runs, files, jobs


def _runs():
    never = (Reason(ReasonKind.NEVER_BUILT),)
    changed = (Reason(ReasonKind.DEP_CHANGED, "a.c", D1, D2),
               Reason(ReasonKind.DEP_LIST_CHANGED, None, ["a.c"], ["a.c", "b.c"]),
               Reason(ReasonKind.FORCED))
    for files in (0, 1, 2, 7, 8, 9, 40):
        reads = tuple((f"src/ü{i}.c", D1 if i % 3 else None) for i in range(files // 2))
        writes = tuple((f"obj/{i}.o", D2) for i in range(files - files // 2))
        for status in (Status.DONE, Status.RESTORED, Status.FAILED):
            for reasons in (never, never, changed, (Reason(ReasonKind.ALWAYS),), ()):
                depfile_deps = {"h.h": D1, "g.h": None} if files % 2 else {}
                yield RunRecord(
                    "exec-1", f"t{files}-{status.value}", "obj/%.o", "key" + str(files),
                    status, reasons, 1.25, 2.5, 0 if status is not Status.FAILED else 2,
                    JobInputs(("cp a b", "touch c"), {"E": "v"}, tuple(p for p, _ in writes),
                              reads, depfile_deps, {"dep": '"a"'}),
                    "tail \u2603", (*reads, *depfile_deps.items()),
                    writes if status is not Status.FAILED else (),
                    "local cache" if status is Status.RESTORED else None,
                    side_files=(("obj/x.d", D1),) if files == 2 else (),
                    same_outputs=None if files == 0 else files % 2 == 0,
                    stored_by=StoredBy("e0", "host", 3.5, "1.0")
                    if status is Status.RESTORED else None)


def test_record_run_stores_the_rows_it_always_stored(tmp_path):
    state = StateDB(str(tmp_path / ".rlmake"))
    try:
        state.start_execution("exec-1", 1.0, ["rlmake", "build"])
        for run in _runs():
            run_id = state.record_run(run)
            runs, files, jobs = _old_rows(run, run_id)
            assert state.conn.execute(
                "SELECT execution, target, rule, key, status, reasons, started, ended, "
                "exit_code, inputs, output_tail, cache_source, same_outputs, stored_by "
                "FROM runs WHERE id = ?", (run_id,)).fetchone() == runs
            assert state.conn.execute(
                "SELECT run, path, digest, mode FROM run_files WHERE run = ? ORDER BY rowid",
                (run_id,)).fetchall() == files
            stored = state.conn.execute(
                "SELECT target, run, key, outputs, depfile_deps, inputs FROM jobs "
                "WHERE target = ?", (run.target,)).fetchone()
            assert stored == jobs
            if jobs is not None:        # read back as it was written
                record = state.job_record(run.target)
                assert record is not None and record.inputs.deps == run.inputs.deps
                assert record.outputs == dict(run.writes)
        state.commit()
    finally:
        state.close()
