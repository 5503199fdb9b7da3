"""A job whose command a build stopped unfinished runs again, in full, in the next build.

A stopped command may have cut a side file short (its depfile, truncated before it
was written) while leaving the outputs as the job's last record has them: they pass
for up to date, and a store would restore the outputs without the side file. So the
log of running commands says which jobs a build that died (or was interrupted) left
unfinished, and the next build forgets their records and runs their commands.

In-process: the log as a killed build leaves it, then a build with the fake executor.
End to end: a real rlmake SIGKILLed, and one interrupted, while a command holds with
its depfile truncated.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import pytest

from buildkit import Project, build_env, finish, kill_group
from engine import Engine
from rlmake.executors import leftovers

if sys.platform != "linux":     # the log needs /proc
    pytestmark = pytest.mark.skip("Linux only")

RULES = """\
rules:
  all:
    deps: [next.txt, other.txt]
  out.txt:
    deps: [in.txt]
    depfile: out.d
    command: "echo 'out.txt: extra.h' > out.d; cat in.txt > out.txt"
  next.txt:
    deps: [out.txt]
    command: cat out.txt > next.txt
  other.txt:
    command: echo other > other.txt
"""


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", RULES)
    engine.write("in.txt", "in\n")
    engine.write("extra.h", "h\n")
    assert sorted(engine.build(local_cache=True).ran) == ["next.txt", "other.txt", "out.txt"]
    return engine


def killed_while_running(engine: Engine, *targets: str) -> None:
    """As a build SIGKILLed while the commands of `targets` ran leaves things: each
    listed in the log, its depfile cut short, its output as before."""
    lines = ["=feed01"] + [f">{target}" for target in targets]
    (engine.root / ".rlmake" / leftovers.FILE_NAME).write_text("\n".join(lines) + "\n")
    engine.write("out.d", "")


def test_a_job_a_killed_build_left_unfinished_runs_again_not_restored(engine):
    killed_while_running(engine, "out.txt")
    built = engine.build(local_cache=True)
    assert built.ran == ["out.txt"], "the unfinished job was not run (or was restored)"
    assert engine.read("out.d") == "out.txt: extra.h\n"
    assert not (engine.root / ".rlmake" / leftovers.FILE_NAME).exists()
    assert engine.build(local_cache=True).ran == []


def test_a_dry_run_and_why_say_what_the_next_build_will_do(engine):
    from rlmake.explain import Will
    from rlmake.model import Status
    from rlmake.project import Project

    killed_while_running(engine, "out.txt")
    surveyed = engine.build(local_cache=True, dry_run=True)
    assert surveyed.of(Status.WOULD_RUN) == {"out.txt", "next.txt"}    # next.txt: maybe
    assert surveyed.of(Status.CACHED) == {"other.txt"}
    [(next_build, _)] = Project(str(engine.root)).why(["out.txt"])
    assert next_build.will is Will.REBUILD, next_build.lines()
    assert STOPPED in " ".join(next_build.lines()), next_build.lines()
    assert (engine.root / ".rlmake" / leftovers.FILE_NAME).exists()    # a dry run keeps it
    assert engine.build(local_cache=True).ran == ["out.txt"]


STOPPED = "because its last run was stopped before it ended"
FAILED = "because its last run failed"


def why_next(engine: Engine, target: str) -> str:
    from rlmake.project import Project

    [(next_build, _)] = Project(str(engine.root)).why([target])
    return " ".join(next_build.lines())


def test_why_says_how_the_last_run_of_an_unfinished_job_ended(engine):
    """Stopped or failed, whichever came last, as the log, then the state database, says;
    not "never built", though its record is forgotten."""
    killed_while_running(engine, "out.txt")
    assert STOPPED in why_next(engine, "out.txt")                   # from the log
    assert engine.build("other.txt", local_cache=True).ran == []    # the log taken over
    assert STOPPED in why_next(engine, "out.txt")                   # from the database
    engine.write("Rulesfile.yaml", RULES.replace("cat in.txt > out.txt", "false"))
    assert engine.build(local_cache=True).status == "failed"
    assert FAILED in why_next(engine, "out.txt")
    killed_while_running(engine, "out.txt")         # a kill while it ran after failing
    assert STOPPED in why_next(engine, "out.txt")
    assert engine.build("other.txt", local_cache=True).ran == []
    assert STOPPED in why_next(engine, "out.txt")
    engine.write("Rulesfile.yaml", RULES)
    assert engine.build(local_cache=True).ran == ["out.txt"]
    assert "will be rebuilt" not in why_next(engine, "out.txt")


def test_a_job_listed_before_the_list_said_how_it_ended(engine):
    """Rows an rlmake of schema 10 listed say nothing of how the run ended: a recorded
    failure says it failed; no run recorded, it was stopped."""
    import sqlite3

    killed_while_running(engine, "next.txt")
    assert engine.build("other.txt", local_cache=True).ran == []    # next.txt listed
    engine.write("Rulesfile.yaml", RULES.replace("cat in.txt > out.txt", "false"))
    assert engine.build(local_cache=True).status == "failed"         # out.txt listed
    with sqlite3.connect(engine.root / ".rlmake" / "state.db") as database:
        database.execute("UPDATE unfinished SET stopped = NULL")
    assert FAILED in why_next(engine, "out.txt")
    assert STOPPED in why_next(engine, "next.txt")


def test_without_the_log_the_same_files_are_up_to_date(engine):
    """The control: the outputs alone say nothing is wrong, so only the log can."""
    engine.write("out.d", "")
    assert engine.build(local_cache=True).ran == []


def test_an_unfinished_job_not_in_this_build_runs_when_it_is(engine):
    """The first build after the kill takes the log over (the records forgotten, the jobs
    listed in the state database) but builds another target: a later one still runs the
    job, and does not restore it from the store."""
    killed_while_running(engine, "out.txt")
    assert engine.build("other.txt", local_cache=True).ran == []
    assert not (engine.root / ".rlmake" / leftovers.FILE_NAME).exists()
    assert engine.build(local_cache=True).ran == ["out.txt"]
    assert engine.read("out.d") == "out.txt: extra.h\n"
    assert engine.build(local_cache=True).ran == []


def test_an_unfinished_job_stays_so_until_a_run_of_it_succeeds(engine):
    """Interrupted before it reached the job, or the job failing, leaves it unfinished."""
    from fakes import FakeExecutor

    killed_while_running(engine, "out.txt")
    interrupted = engine.build(local_cache=True, executor=FakeExecutor(engine.clock,
                                                                         interrupt_at=1))
    assert interrupted.status == "interrupted" and interrupted.ran == []
    engine.write("Rulesfile.yaml", RULES.replace("cat in.txt > out.txt", "false"))
    assert engine.build(local_cache=True).status == "failed"
    engine.write("Rulesfile.yaml", RULES)
    assert engine.build(local_cache=True).ran == ["out.txt"]     # not restored
    assert engine.read("out.d") == "out.txt: extra.h\n"
    engine.write("out.txt", "edited\n")                         # stale, and stored before:
    assert engine.build(local_cache=True).ran == []             # restored, as any job is
    assert engine.read("out.txt") == "in\n"


def test_a_failed_run_is_followed_by_a_run_not_a_restore(engine):
    """A command that cut its depfile short and then failed leaves it so; a restore of the
    outputs the store holds from an earlier run would keep it that way."""
    engine.write("Rulesfile.yaml", RULES.replace("cat in.txt > out.txt",
                                                 "printf '' > out.d; false"))
    assert engine.build(local_cache=True).status == "failed"
    assert engine.read("out.d") == ""
    engine.write("Rulesfile.yaml", RULES)
    assert engine.build(local_cache=True).ran == ["out.txt"]
    assert engine.read("out.d") == "out.txt: extra.h\n"


def test_the_record_and_the_end_of_unfinished_are_committed_together(engine):
    """Killed right after a batch that holds the job's new record, a build must not leave
    the job both recorded and listed: listed, it would never be cleared (only a job with no
    record is looked up in the list)."""
    import sqlite3

    from fakes import FakeExecutor

    seen = []

    def look(task):                         # while next.txt runs, after out.txt's commit
        with sqlite3.connect(engine.root / ".rlmake" / "state.db") as db:
            seen.append((db.execute("SELECT count(*) FROM jobs WHERE target = 'out.txt'")
                         .fetchone()[0],
                         db.execute("SELECT count(*) FROM unfinished").fetchone()[0]))

    killed_while_running(engine, "out.txt")
    executor = FakeExecutor(engine.clock, during={"next.txt": look})
    engine.write("in.txt", "changed\n")            # so that next.txt runs too
    assert engine.build(local_cache=True, executor=executor).ran == ["out.txt", "next.txt"]
    assert seen == [(1, 0)]


def test_the_log_names_any_target_in_one_line(tmp_path):
    names = ["plain.o", "with space.o", "new\nline.o", "back\\slash.o", "caf\u00e9.o",
             ">arrow.o", "=equals.o", "-dash.o", "+plus.o"]
    record = leftovers.CommandRecord(str(tmp_path))
    for name in names:
        record.clock(name)
    record.flush()
    assert leftovers.read_log(record.path).unfinished == set(names)


@pytest.mark.parametrize("line", [b">\\udcff", b">\\ud800x", b">\\N{no such name}",
                                  b">trailing\\"])
def test_a_damaged_name_in_the_log_names_no_job(tmp_path, line):
    (tmp_path / "running").write_bytes(b"=ab12\n" + line + b"\n>good\n")
    assert leftovers.read_log(str(tmp_path / "running")).unfinished == {"good"}


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_log_that_is_no_regular_file_says_nothing(tmp_path, kind):
    """An archive may ship anything there: nothing hangs on a FIFO nobody writes to, nor
    reads /dev/zero until memory runs out."""
    path = tmp_path / "running"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    assert leftovers.read_log(str(path)) == (set(), {}, set())


def test_the_log_replays_starts_and_ends(tmp_path):
    (tmp_path / "running").write_text(
        "=ab12\n>a\n+10 5 7\n>b\n+11 6 8\n-10\n>c\n+12 9 9\nnoise\n+13 1\n>d\n")
    log = leftovers.read_log(str(tmp_path / "running"))
    assert log.tokens == {"ab12"}
    assert log.running == {11: (6, 8), 12: (9, 9)}
    assert log.unfinished == {"b", "c", "d"}      # a ended; d's command never listed
    assert leftovers.read_log(str(tmp_path / "absent")) == (set(), {}, set())


def test_a_log_from_before_jobs_were_named_still_stops_commands(tmp_path):
    (tmp_path / "running").write_text("=ab12\n+10 5 7\n+11 6 8\n-10\n")
    assert leftovers.read_log(str(tmp_path / "running")) == ({"ab12"}, {11: (6, 8)}, set())


# --- end to end ---------------------------------------------------------------------------

# The depfile is cut short first; with HOLD=1 (not part of the job's key) the command
# then waits for `release` (up to 30 s), as a long compile would, before writing it all.
HELD_RULES = """\
rules:
  out.txt:
    deps: [in.txt]
    depfile: out.d
    command: >-
      : > out.d; echo $$ > held.pid;
      i=0; while [ "${HOLD:-}" = 1 ] && [ ! -e release ] && [ $i -lt 600 ];
      do sleep 0.05; i=$((i+1)); done;
      echo 'out.txt: extra.h' > out.d; cat in.txt > out.txt
"""


@pytest.fixture
def held(tmp_path) -> Project:
    project = Project(tmp_path / "proj", local_cache=True)     # as by default: on
    project.rules(HELD_RULES)
    project.write("in.txt", "in\n")
    project.write("extra.h", "h\n")
    assert project.build().ran == {"out.txt"}
    (project.root / "held.pid").unlink()
    return project


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_forced_job_stopped_with_its_depfile_cut_short_runs_again(held, signum):
    process = held.start("-B", env=build_env(HOLD="1"))
    try:
        held.wait_for("held.pid")
        during = held.cli("why", "out.txt")     # the log is the running build's own
        process.send_signal(signum)
        finish(process, timeout=15)
        assert held.read("out.d") == "", "the command had not cut its depfile short"
        assert held.read("out.txt") == "in\n"
        why = held.cli("why", "out.txt")
        result = held.build()
    finally:
        held.write("release", "")
        kill_group(process)
    assert "stopped" not in during.stdout, during.describe()
    assert f"out.txt: will be rebuilt {STOPPED}" in why.stdout, why.describe()
    assert "Run    out.txt: its last run was stopped before it ended" in result.lines, \
        result.describe()
    assert result.ran == {"out.txt"}, result.describe()
    assert held.read("out.d") == "out.txt: extra.h\n"
    assert held.build().ran == set()
    assert not held.exists(".rlmake/running")


def test_a_failure_is_committed_at_once(tmp_path):
    """A build killed while other jobs still run must not bring back the record of a job
    that failed: that record is what made the next build run it. Successes are still
    committed in batches (the control)."""
    import sqlite3

    from fakes import FakeClock
    from rlmake.model import JobInputs, RunRecord, Status
    from rlmake.recorder import Recorder
    from rlmake.state import StateDB

    state = StateDB(str(tmp_path / ".rlmake"))
    recorder = Recorder(state, "e1", FakeClock())
    recorder.start(["rlmake", "build"])
    state.commit()

    def run(target: str, status: Status) -> RunRecord:
        inputs = JobInputs(("make " + target,), {}, (target,), (), {}, {})
        return RunRecord("e1", target, "r", "k", status, (), 1.0, 2.0,
                         0 if status is Status.DONE else 1, inputs)

    def committed(table: str) -> set[str]:
        with contextlib.closing(sqlite3.connect(tmp_path / ".rlmake" / "state.db")) as other:
            return {target for (target,) in other.execute(f"SELECT target FROM {table}")}

    recorder.record(run("made", Status.DONE))
    assert committed("runs") == set()                   # batched: not yet
    recorder.record(run("broken", Status.FAILED))
    assert committed("unfinished") == {"broken"}
    assert committed("runs") == {"made", "broken"}
    state.close()


def test_the_jobs_are_listed_before_the_commands_are_stopped(engine, monkeypatch):
    """Stopping leftover commands may take seconds, and meanwhile `why` leaves the log of
    the build holding the lock alone: the jobs must be listed in the database by then."""
    from rlmake import project

    seen: list[str] = []
    stop = project.stop_leftovers

    def stop_and_look(log, say):
        seen.append(why_next(engine, "out.txt"))
        return stop(log, say)

    monkeypatch.setattr(project, "stop_leftovers", stop_and_look)
    monkeypatch.setattr(project, "build_running", lambda state_dir: True)   # the build's lock
    killed_while_running(engine, "out.txt")
    assert engine.build(local_cache=True).ran == ["out.txt"]
    assert len(seen) == 1 and STOPPED in seen[0], seen


@pytest.mark.parametrize("line, running", [
    (b"1: FLOCK  ADVISORY  WRITE 4242 00:2b:{inode} 0 EOF", True),
    (b"1: FLOCK  ADVISORY  WRITE 4242 fe:00:{inode} 0 EOF", True),     # btrfs: another device
    (b"1: FLOCK  ADVISORY  WRITE 4343 00:2b:{inode} 0 EOF", False),    # not the pid it names
    (b"1: FLOCK  ADVISORY  WRITE 4242 00:2b:1{inode} 0 EOF", False),   # another inode
    (b"1: -> FLOCK  ADVISORY  WRITE 4242 00:2b:{inode} 0 EOF", False),  # only waiting for it
    (b"1: POSIX  ADVISORY  WRITE 4242 00:2b:{inode} 0 EOF", False),
    (b"", False),
])
def test_a_running_build_is_the_one_the_lock_file_names(tmp_path, monkeypatch, line, running):
    from rlmake import lock

    (tmp_path / "lock").write_text("4242")
    inode = str((tmp_path / "lock").stat().st_ino).encode()
    (tmp_path / "locks").write_bytes(b"9: POSIX  ADVISORY  READ 1 fe:00:7 0 EOF\n"
                                     + line.replace(b"{inode}", inode) + b"\n")
    monkeypatch.setattr(lock, "LOCKS_TABLE", str(tmp_path / "locks"))
    assert lock.build_running(str(tmp_path)) is running
