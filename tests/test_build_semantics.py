"""What `rlmake build` really does, end to end: staleness, early cutoff, parallelism,
pools, failures, interruption, locking, and the state database.

Every test runs the installed `rlmake` (CI=1) in a project under tmp_path with
plain shell commands. Commands append a line to `ran.log` when they run, which is
the ground truth of what ran; the `-v` lines are checked as well.

Fixtures (tests/buildkit.py):
- `proj` runs a test twice: "fresh" (files as new as the test writes them) and
  "aged" (files moved into the past after each build, as if the user paused, so
  that rlmake trusts their stats and takes its no-op fast path). `proj.noop()`
  builds and requires that nothing ran; tests call it before each change so that
  in the aged variant the change is found through the up-to-date snapshot.
- `fresh_proj`: one variant only, for timing, signal, lock and failure tests.
- Both switch rlmake's local artifact cache off (rlmake.toml), since a restore
  brings outputs back without running the command; `cached_proj` keeps rlmake's
  defaults, for the tests of the cache itself.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from buildkit import (HOLD, Project, build_env, finish, kill_group, pid_alive, rlmake_exe,
                      wait_until_dead)
from rlmake.state import SCHEMA_VERSION

pytestmark = pytest.mark.integration     # every test here starts real processes


# --- what makes a job stale -----------------------------------------------------------

COPY = """
rules:
  out.txt:
    deps: [in.txt]
    command: "{command} && echo out >> ran.log"
"""


def test_command_change_reruns(proj):
    proj.rules(COPY.format(command="cp in.txt out.txt"))
    proj.write("in.txt", "hello\n")
    proj.build()
    assert proj.take_log() == ["out"]
    proj.noop()

    proj.rules(COPY.format(command="cat in.txt > out.txt"))
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert "command changed" in result.stdout, result.describe()
    assert proj.take_log() == ["out"]
    proj.noop()


VARS = """
vars:
  msg: hello
rules:
  out.txt:
    command: "echo {{ msg }} > out.txt && echo out >> ran.log"
"""


def test_var_override_reruns_once(proj):
    proj.rules(VARS)
    proj.build()
    assert proj.read("out.txt") == "hello\n"
    assert proj.take_log() == ["out"]
    proj.noop()

    proj.build("msg=x")
    assert proj.read("out.txt") == "x\n"
    assert proj.take_log() == ["out"]

    proj.noop("msg=x")
    proj.noop("msg=x")

    proj.build()                            # back to the Rulesfile's value
    assert proj.read("out.txt") == "hello\n"
    assert proj.take_log() == ["out"]


ENV = """
rules:
  out.txt:
    env:
      GREETING: "{greeting}"
    command: 'echo "$GREETING" > out.txt && echo out >> ran.log'
"""


def test_env_change_reruns_but_inherited_environment_does_not(fresh_proj):
    fresh_proj.rules(ENV.format(greeting="hi"))
    fresh_proj.build()
    assert fresh_proj.read("out.txt") == "hi\n"
    assert fresh_proj.take_log() == ["out"]
    fresh_proj.noop()

    fresh_proj.rules(ENV.format(greeting="bye"))
    result = fresh_proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert fresh_proj.read("out.txt") == "bye\n"
    assert fresh_proj.take_log() == ["out"]

    # the environment rlmake inherits is not part of a job's key
    result = fresh_proj.build(env=build_env(SOME_UNRELATED_VARIABLE="1"))
    assert result.ran == set(), result.describe()
    assert fresh_proj.take_log() == []


def test_missing_output_reruns(proj):
    proj.rules(COPY.format(command="cp in.txt out.txt"))
    proj.write("in.txt", "hello\n")
    proj.build()
    proj.take_log()
    proj.noop()
    (proj.root / "out.txt").unlink()
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert proj.read("out.txt") == "hello\n"
    assert proj.take_log() == ["out"]
    assert proj.build().ran == set()


CHAIN = """
rules:
  c.txt:
    deps: [b.txt]
    command: "cp b.txt c.txt && echo c >> ran.log"
  b.txt:
    deps: [a.txt]
    command: "tr -d ' ' < a.txt > b.txt && echo b >> ran.log"
"""


def test_output_edited_by_hand_reruns(proj):
    proj.rules(CHAIN)
    proj.write("a.txt", "x y z\n")
    proj.build()
    assert proj.take_log() == ["b", "c"]
    proj.noop()

    proj.write("b.txt", "edited by hand\n")
    result = proj.build()
    assert "b.txt" in result.ran, result.describe()
    assert proj.read("b.txt") == "xyz\n"
    # b.txt came back with the bytes c.txt was built from: c.txt is up to date
    assert proj.take_log() == ["b"]
    assert result.cached == {"c.txt"}, result.describe()
    proj.noop()


def test_early_cutoff(proj):
    proj.rules(CHAIN)
    proj.write("a.txt", "x y z\n")
    proj.build()
    assert proj.take_log() == ["b", "c"]
    proj.noop()

    proj.write("a.txt", "x y  z \n")        # only spaces added: b.txt comes out the same
    result = proj.build()
    assert result.ran == {"b.txt"}, result.describe()
    assert result.cached == {"c.txt"}, result.describe()
    assert proj.take_log() == ["b"]
    proj.noop()

    proj.write("a.txt", "x y w\n")          # a real change goes all the way
    result = proj.build()
    assert result.ran == {"b.txt", "c.txt"}, result.describe()
    assert proj.take_log() == ["b", "c"]
    assert proj.read("c.txt") == "xyw\n"
    proj.noop()


def test_failed_job_reruns_next_time_even_if_nothing_changed(fresh_proj):
    fresh_proj.rules("""
        rules:
          out.txt:
            command: "echo try >> ran.log && test -e ok && echo ok > out.txt"
    """)
    fresh_proj.build(expect=1)
    assert fresh_proj.take_log() == ["try"]
    fresh_proj.write("ok", "")                    # not a dep: only "never succeeded" reruns it
    result = fresh_proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert fresh_proj.take_log() == ["try"]
    assert fresh_proj.build().ran == set()


def test_dep_list_change_reruns(fresh_proj):
    fresh_proj.rules("""
        rules:
          out.txt:
            deps: [a.txt, b.txt]
            command: "cat a.txt > out.txt && echo out >> ran.log"
    """)
    fresh_proj.write("a.txt", "a\n")
    fresh_proj.write("b.txt", "b\n")
    fresh_proj.build()
    assert fresh_proj.take_log() == ["out"]
    fresh_proj.noop()
    fresh_proj.rules("""
        rules:
          out.txt:
            deps: [b.txt, a.txt]
            command: "cat a.txt > out.txt && echo out >> ran.log"
    """)
    result = fresh_proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert fresh_proj.take_log() == ["out"]


def test_a_file_new_to_a_glob_reruns(proj):
    proj.rules("""
        rules:
          all.txt:
            deps: ["{{ glob('parts/*.txt') }}"]
            command: "cat {{ deps | quote_all }} > all.txt && echo all >> ran.log"
    """)
    proj.write("parts/a.txt", "a\n")
    proj.build()
    assert proj.take_log() == ["all"]
    proj.noop()
    proj.write("parts/b.txt", "b\n")
    result = proj.build()
    assert result.ran == {"all.txt"}, result.describe()
    assert proj.read("all.txt") == "a\nb\n"
    proj.noop()
    (proj.root / "parts" / "a.txt").unlink()
    proj.build()
    assert proj.read("all.txt") == "b\n"
    proj.noop()


def test_a_var_changed_in_an_included_file_reruns(proj):
    proj.rules("""
        include: [more.yaml]
        rules:
          out.txt:
            command: "echo {{ greeting }} > out.txt && echo out >> ran.log"
    """)
    proj.write("more.yaml", "vars:\n  greeting: hi\n")
    proj.build()
    proj.noop()
    proj.write("more.yaml", "vars:\n  greeting: ho\n")
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert proj.read("out.txt") == "ho\n"
    proj.noop()


def test_a_source_deleted_after_a_build_is_an_error(proj):
    proj.rules(COPY.format(command="cp in.txt out.txt"))
    proj.write("in.txt", "hello\n")
    proj.build()
    proj.noop()
    (proj.root / "in.txt").unlink()
    result = proj.build(expect=2)
    assert "no rule to make target 'in.txt', needed by 'out.txt'" in result.stderr, \
        result.describe()
    assert proj.take_log() == []
    proj.write("in.txt", "back\n")
    proj.build()
    assert proj.read("out.txt") == "back\n"


# --- parallelism and pools --------------------------------------------------------------

def test_j2_runs_two_jobs_at_once(fresh_proj):
    """Each job waits for the other to have started: only jobs that run at the same time
    can both see it. No clock is read, so a busy machine cannot make it fail."""
    fresh_proj.rules("""
        rules:
          all:
            deps: [one.txt, two.txt]
          "{{ n }}.txt":
            foreach:
              n: [one, two]
            command: >-
              touch {{ n }}.started; i=0;
              while [ ! -e {{ 'two' if n == 'one' else 'one' }}.started ] && [ $i -lt 1500 ];
              do sleep 0.02; i=$((i+1)); done;
              if [ $i -lt 1500 ]; then echo together; else echo alone; fi > {{ target }}
    """)
    result = fresh_proj.build("-j2")
    assert fresh_proj.read("one.txt") == fresh_proj.read("two.txt") == "together\n", \
        result.describe()


def test_output_of_parallel_jobs_is_not_interleaved(fresh_proj):
    fresh_proj.rules("""
        rules:
          all:
            deps: [x.txt, y.txt]
          x.txt:
            command: "echo x1; sleep 0.2; echo x2; sleep 0.2; echo x3; touch x.txt"
          y.txt:
            command: "sleep 0.1; echo y1; sleep 0.2; echo y2; sleep 0.2; echo y3; touch y.txt"
    """)
    result = fresh_proj.build("-j2")
    job_lines = [line for line in result.lines if line in
                 {"x1", "x2", "x3", "y1", "y2", "y3"}]
    assert sorted(job_lines) == ["x1", "x2", "x3", "y1", "y2", "y3"], result.describe()
    assert job_lines in (["x1", "x2", "x3", "y1", "y2", "y3"],
                         ["y1", "y2", "y3", "x1", "x2", "x3"]), result.describe()


POOLED = """
default: all
pools:
  slot: {size}
rules:
  all:
    deps: [p1.txt, p2.txt, p3.txt, p4.txt]
  "p{{{{ i }}}}.txt":
    foreach:
      i: [1, 2, 3, 4]
    pool: slot
    command: "date +%s.%N > {{{{ target }}}}; sleep 0.3; date +%s.%N >> {{{{ target }}}}"
"""


def _intervals(project: Project) -> list[tuple[float, float]]:
    spans = []
    for i in range(1, 5):
        start, end = map(float, project.read(f"p{i}.txt").split())
        assert start < end
        spans.append((start, end))
    return spans


def _max_overlap(spans) -> int:
    """The largest number of spans running at one moment."""
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_pool_of_one_runs_its_jobs_one_at_a_time(fresh_proj):
    fresh_proj.rules(POOLED.format(size=1))
    result = fresh_proj.build("-j4")
    spans = sorted(_intervals(fresh_proj))
    assert _max_overlap(spans) == 1, (spans, result.describe())
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans


def test_pool_of_two_runs_at_most_two_at_once(fresh_proj):
    fresh_proj.rules(POOLED.format(size=2))
    result = fresh_proj.build("-j4")
    spans = _intervals(fresh_proj)
    assert _max_overlap(spans) <= 2, (spans, result.describe())
    assert _max_overlap(spans) == 2, (spans, result.describe())   # the pool is used


def test_foreach_with_a_literal_list_and_no_default(fresh_proj):
    fresh_proj.rules("""
        rules:
          all:
            deps: [a1.txt, a2.txt]
          "a{{ i }}.txt":
            foreach:
              i: [1, 2]
            command: "echo {{ i }} > {{ target }}"
    """)
    result = fresh_proj.build(expect=None)
    assert "Traceback" not in result.stderr, result.describe()
    assert result.returncode == 0, result.describe()
    assert fresh_proj.read("a1.txt") == "1\n" and fresh_proj.read("a2.txt") == "2\n"


def test_j1_caps_a_bigger_pool(fresh_proj):
    fresh_proj.rules(POOLED.format(size=2))
    result = fresh_proj.build("-j1")
    assert _max_overlap(_intervals(fresh_proj)) == 1, result.describe()


# --- failures ---------------------------------------------------------------------------

KEEP_GOING = """
rules:
  all:
    deps: [bad.txt, after.txt, good.txt]
  bad.txt:
    command: "echo bad >> ran.log; exit 3"
  after.txt:
    deps: [bad.txt]
    command: "cp bad.txt after.txt && echo after >> ran.log"
  good.txt:
    command: "echo good > good.txt && echo good >> ran.log"
"""


def test_failure_stops_the_build_without_k(fresh_proj):
    fresh_proj.rules(KEEP_GOING)
    result = fresh_proj.build("-j1", expect=1)
    assert "bad.txt" in result.stderr, result.describe()
    assert fresh_proj.take_log() == ["bad"]
    assert not fresh_proj.exists("good.txt")
    assert not fresh_proj.exists("after.txt")


def test_keep_going_builds_what_does_not_depend_on_the_failure(fresh_proj):
    fresh_proj.rules(KEEP_GOING)
    result = fresh_proj.build("-j1", "-k", expect=1)
    assert "FAILED: bad.txt" in result.stderr, result.describe()
    assert sorted(fresh_proj.take_log()) == ["bad", "good"]
    assert fresh_proj.read("good.txt") == "good\n"
    assert not fresh_proj.exists("after.txt")
    # the next build retries only the failure (good.txt is cached)
    again = fresh_proj.build("-k", expect=1)
    assert "good.txt" in again.cached, again.describe()
    assert fresh_proj.take_log() == ["bad"]


def test_failed_job_deletes_its_partial_output(fresh_proj):
    fresh_proj.rules("""
        rules:
          out.txt:
            command: "echo partial > out.txt; exit 1"
    """)
    result = fresh_proj.build(expect=1)
    assert not fresh_proj.exists("out.txt")
    assert "out.txt" in result.stderr, result.describe()
    assert "exit status 1" in result.stderr, result.describe()


def test_failed_job_keeps_an_older_output_it_did_not_touch_but_it_stays_stale(proj):
    good = """
        rules:
          out.txt:
            command: "echo v1 > out.txt && echo out >> ran.log"
    """
    proj.rules(good)
    proj.build()
    proj.take_log()
    proj.noop()
    proj.rules("""
        rules:
          out.txt:
            command: "echo fail >> ran.log; exit 4"
    """)
    result = proj.build(expect=1)
    assert "exit status 4" in result.stderr, result.describe()
    assert proj.read("out.txt") == "v1\n"       # untouched: kept
    proj.rules(good)                            # the command of the last success again
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert proj.take_log() == ["fail", "out"]
    proj.noop()


def test_exit_0_without_writing_the_output_fails_naming_it(fresh_proj):
    fresh_proj.rules("""
        rules:
          out.txt:
            outputs: [extra.txt]
            command: "echo made > out.txt"
    """)
    result = fresh_proj.build(expect=1)
    assert "extra.txt" in result.stderr, result.describe()
    assert "FAILED: out.txt" in result.stderr, result.describe()
    assert not fresh_proj.exists("out.txt")           # created by the failed job: deleted
    assert fresh_proj.build(expect=1).returncode == 1  # and it is not recorded as done


LIST_WITH_FAILURE = """
rules:
  out.txt:
    command:
      - echo one >> ran.log
      - "false"
      - echo three >> ran.log
      - echo x > out.txt
"""


def test_first_failing_command_of_a_list_stops_the_rest(fresh_proj):
    fresh_proj.rules(LIST_WITH_FAILURE)
    result = fresh_proj.build(expect=1)
    assert not fresh_proj.exists("out.txt")
    assert "FAILED: out.txt" in result.stderr, result.describe()
    assert "command: false" in result.stderr, result.describe()
    assert fresh_proj.take_log() == ["one"]
    # it is not recorded as done: the next build runs it again
    fresh_proj.build(expect=1)
    assert fresh_proj.take_log() == ["one"]


# --- interruption and concurrency -------------------------------------------------------

SLOW_CHAIN = """
default: c.txt
rules:
  c.txt:
    deps: [b.txt]
    command: "cat b.txt b.txt > c.txt && echo c >> ran.log"
  b.txt:
    deps: [a.txt]
    command: >-
      echo $$ > b.pid; echo partial > b.txt; sleep ${SLOW:-0};
      tr a-z A-Z < a.txt > b.txt && echo b >> ran.log
  a.txt:
    deps: [src.txt]
    command: "cp src.txt a.txt && echo a >> ran.log"
"""


def test_sigkill_mid_build_then_the_next_build_recovers(fresh_proj):
    fresh_proj.rules(SLOW_CHAIN)
    fresh_proj.write("src.txt", "abc\n")
    # SLOW comes from the inherited environment, which is not part of any job's key
    process = fresh_proj.start("-j1", env=build_env(SLOW="5"))
    try:
        orphan = int(fresh_proj.wait_for_line("b.pid"))
        fresh_proj.wait_for_line("b.txt")       # b's command is half way
    finally:
        kill_group(process, signal.SIGKILL)
        process.communicate(timeout=10)
    assert fresh_proj.read("b.txt") == "partial\n" and not fresh_proj.exists("c.txt")
    try:
        # The killed build's lock must be gone even if its child still runs.
        result = fresh_proj.build("--no-wait")
        assert "waiting" not in result.stderr, result.describe()
    finally:
        # b.txt's shell ran in its own session, so it may outlive a SIGKILLed rlmake;
        # stop it so it cannot rewrite b.txt behind the next builds.
        if pid_alive(orphan):
            os.killpg(orphan, signal.SIGKILL)
            wait_until_dead(orphan, 5)
    assert fresh_proj.read("a.txt") == "abc\n"
    assert fresh_proj.read("b.txt") == "ABC\n"
    assert fresh_proj.read("c.txt") == "ABC\nABC\n"
    log = fresh_proj.take_log()
    assert log.count("c") == 1 and log.count("b") == 1, log
    again = fresh_proj.build()
    assert again.ran == set(), again.describe()
    assert fresh_proj.take_log() == []


def test_sigkill_leaves_a_partial_output_that_the_next_build_replaces(proj):
    """The killed job had an older successful run, and the next build's inputs match it
    again: only the output's bytes tell that the job must rerun."""
    proj.rules(SLOW_CHAIN)
    proj.write("src.txt", "abc\n")
    proj.build()
    assert proj.take_log() == ["a", "b", "c"]
    (proj.root / "b.pid").unlink()
    proj.noop()

    proj.write("src.txt", "xyz\n")
    process = proj.start("-j1", env=build_env(SLOW="5"))
    try:
        orphan = int(proj.wait_for_line("b.pid"))
        proj.wait_for_line("b.txt")             # b's command is half way
    finally:
        kill_group(process, signal.SIGKILL)
        process.communicate(timeout=10)
    if pid_alive(orphan):
        os.killpg(orphan, signal.SIGKILL)
        wait_until_dead(orphan, 5)
    assert proj.read("a.txt") == "xyz\n"
    assert proj.read("b.txt") == "partial\n"
    proj.take_log()

    proj.write("src.txt", "abc\n")             # back to the inputs of the last full build
    result = proj.build()
    assert proj.read("a.txt") == "abc\n"
    assert proj.read("b.txt") == "ABC\n"
    assert proj.read("c.txt") == "ABC\nABC\n"
    assert {"a.txt", "b.txt"} <= result.ran, result.describe()
    assert result.cached == {"c.txt"}, result.describe()   # b.txt came out as c.txt knew it
    assert proj.build().ran == set()


INTERRUPTIBLE = """
rules:
  all:
    deps: [slow.txt, quick.txt]
  quick.txt:
    command: "echo q > quick.txt"
  slow.txt:
    command: >-
      echo partial > slow.txt;
      sleep ${SLOW:-0} & echo $! > sleeper.pid; wait $!;
      echo full > slow.txt
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_the_child_and_exits_130(fresh_proj, signum):
    fresh_proj.rules(INTERRUPTIBLE)
    process = fresh_proj.start("-j2", env=build_env(SLOW="30"))
    try:
        sleeper = int(fresh_proj.wait_for_line("sleeper.pid"))
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signum)           # rlmake only, not its process group
        result = finish(process, timeout=15)
    finally:
        kill_group(process)
    assert result.returncode == 130, result.describe()
    assert time.monotonic() - started < 10, result.describe()
    assert wait_until_dead(sleeper, 2.0), "the job's `sleep 30` outlived rlmake"
    assert not fresh_proj.exists("slow.txt"), "the interrupted job's partial output was kept"

    done = fresh_proj.build()
    assert done.ran == {"slow.txt"}, done.describe()    # quick.txt finished before the signal
    assert fresh_proj.read("slow.txt") == "full\n"
    assert fresh_proj.read("quick.txt") == "q\n"
    assert fresh_proj.build().ran == set()


def test_interrupt_kills_a_child_that_ignores_sigterm(fresh_proj):
    fresh_proj.rules("""
        rules:
          stubborn.txt:
            command: >-
              trap '' TERM INT;
              sleep 30 & echo $! > sleeper.pid; wait $!; wait $!;
              echo done > stubborn.txt
    """)
    process = fresh_proj.start()
    try:
        sleeper = int(fresh_proj.wait_for_line("sleeper.pid"))
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        result = finish(process, timeout=20)
    finally:
        kill_group(process)
    assert result.returncode == 130, result.describe()
    assert wait_until_dead(sleeper, 2.0), "a child that ignores SIGTERM outlived rlmake"
    assert not fresh_proj.exists("stubborn.txt")


def test_second_build_waits_for_the_first_or_exits_2_with_no_wait(fresh_proj):
    fresh_proj.rules(f"""
        rules:
          out.txt:
            command: "{HOLD}; echo done > out.txt; echo out >> ran.log"
    """)
    first = fresh_proj.start_logged("first")
    second = None
    try:
        fresh_proj.wait_for("started")
        refused = fresh_proj.build("--no-wait", expect=2, timeout=10)
        assert first.poll() is None, "the first build should still hold the project"
        assert "another rlmake build" in refused.stderr, refused.describe()

        second = fresh_proj.start_logged("second", "-v")
        fresh_proj.wait_until_said("second", "waiting")
        assert second.poll() is None
        fresh_proj.write("release", "")
        assert first.wait(timeout=30) == 0, fresh_proj.said("first")
        assert second.wait(timeout=30) == 0, fresh_proj.said("second")
    finally:
        kill_group(first)
        if second is not None:
            kill_group(second)
    assert fresh_proj.read("out.txt") == "done\n"
    assert fresh_proj.take_log() == ["out"]                  # the second build found it done
    assert "Cached out.txt" in fresh_proj.said("second"), fresh_proj.said("second")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_while_waiting_for_the_lock_exits_130(fresh_proj, signum):
    fresh_proj.rules(f"""
        rules:
          out.txt:
            command: "{HOLD}; echo done > out.txt"
    """)
    first = fresh_proj.start_logged("first")
    second = None
    try:
        fresh_proj.wait_for("started")
        second = fresh_proj.start_logged("second")
        fresh_proj.wait_until_said("second", "waiting")
        second.send_signal(signum)
        code = second.wait(timeout=10)
        fresh_proj.write("release", "")
        assert first.wait(timeout=30) == 0, fresh_proj.said("first")
    finally:
        kill_group(first)
        if second is not None:
            kill_group(second)
    assert code == 130, (code, fresh_proj.said("second"))


# --- always, phony, -B, -n, hash modes ------------------------------------------------

def test_always_runs_every_time_and_dependents_only_on_changed_bytes(fresh_proj):
    fresh_proj.rules("""
        rules:
          use.txt:
            deps: [gen.txt]
            command: "cp gen.txt use.txt && echo use >> ran.log"
          gen.txt:
            always: true
            command: "cat src.txt > gen.txt && echo gen >> ran.log"
    """)
    fresh_proj.write("src.txt", "one\n")              # not a dep: only `always` notices it
    fresh_proj.build()
    assert fresh_proj.take_log() == ["gen", "use"]
    result = fresh_proj.build()
    assert "gen.txt" in result.ran, result.describe()
    assert fresh_proj.take_log() == ["gen"]
    fresh_proj.write("src.txt", "two\n")
    fresh_proj.build()
    assert fresh_proj.take_log() == ["gen", "use"]
    assert fresh_proj.read("use.txt") == "two\n"


def test_always_phony_counts_as_changed_on_every_run(fresh_proj):
    fresh_proj.rules("""
        rules:
          use.txt:
            deps: [tick]
            command: "echo used > use.txt && echo use >> ran.log"
          tick:
            phony: true
            always: true
            command: "echo tick >> ran.log"
    """)
    fresh_proj.build()
    assert fresh_proj.take_log() == ["tick", "use"]
    fresh_proj.build()
    assert fresh_proj.take_log() == ["tick", "use"]


def test_phony_test_rule_is_cached_until_its_dep_changes(proj):
    proj.rules("""
        default: test
        rules:
          test:
            deps: [prog]
            command: "./prog >> test.out && echo test >> ran.log"
            phony: true
          prog:
            deps: [prog.sh]
            command: "cp prog.sh prog && chmod +x prog && echo prog >> ran.log"
    """)
    proj.write("prog.sh", "#!/bin/sh\necho v1\n")
    proj.build()
    assert proj.take_log() == ["prog", "test"]
    assert not proj.exists("test")              # phony: no file
    proj.noop()
    proj.noop()
    proj.touch_later("prog.sh")
    proj.noop()
    proj.write("prog.sh", "#!/bin/sh\necho v2\n")
    proj.build()
    assert proj.take_log() == ["prog", "test"]
    assert proj.read("test.out") == "v1\nv2\n"
    proj.noop()


THREE = """
rules:
  all:
    deps: [c.txt, x.txt]
  c.txt:
    deps: [b.txt]
    command: "cp b.txt c.txt && echo c >> ran.log"
  b.txt:
    deps: [a.txt]
    command: "cp a.txt b.txt && echo b >> ran.log"
  a.txt:
    deps: [src.txt]
    command: "cp src.txt a.txt && echo a >> ran.log"
  x.txt:
    command: "echo x > x.txt && echo x >> ran.log"
    description: "MAKE X"
"""


def test_dependent_of_an_aggregate_sees_the_bytes_behind_it(proj):
    proj.rules("""
        rules:
          bundle.txt:
            deps: [group]
            command: "cat a.txt b.txt > bundle.txt && echo bundle >> ran.log"
          group:
            deps: [a.txt, b.txt]
    """)
    proj.write("a.txt", "a\n")
    proj.write("b.txt", "b\n")
    proj.build()
    assert proj.take_log() == ["bundle"]
    proj.noop()
    proj.touch_later("b.txt")
    proj.noop()
    proj.write("b.txt", "B\n")
    result = proj.build()
    assert result.ran == {"bundle.txt"}, result.describe()
    assert proj.read("bundle.txt") == "a\nB\n"
    proj.noop()


def test_rule_with_several_outputs_runs_once_for_any_of_them(proj):
    proj.rules("""
        rules:
          all:
            deps: [one.txt, two.txt, use.txt]
          one.txt:
            outputs: [two.txt]
            command: "echo 1 > one.txt && echo 2 > two.txt && echo pair >> ran.log"
          use.txt:
            deps: [two.txt]
            command: "cp two.txt use.txt && echo use >> ran.log"
    """)
    proj.build("two.txt")
    assert proj.take_log() == ["pair"]
    proj.build()
    assert proj.take_log() == ["use"]
    proj.noop()
    (proj.root / "two.txt").unlink()
    result = proj.build()
    assert result.ran == {"one.txt"}, result.describe()
    assert proj.take_log() == ["pair"]          # same bytes again: use.txt stays cached
    proj.noop()


def test_B_reruns_everything(proj):
    proj.rules(THREE)
    proj.write("src.txt", "s\n")
    proj.build()
    assert sorted(proj.take_log()) == ["a", "b", "c", "x"]
    proj.noop()
    result = proj.build("-B")
    assert result.ran == {"a.txt", "b.txt", "c.txt", "x.txt"}, result.describe()
    assert sorted(proj.take_log()) == ["a", "b", "c", "x"]
    proj.noop()


def test_B_on_one_target_forces_what_it_needs_only(fresh_proj):
    fresh_proj.rules(THREE)
    fresh_proj.write("src.txt", "s\n")
    fresh_proj.build()
    fresh_proj.take_log()
    fresh_proj.noop()
    result = fresh_proj.build("-B", "b.txt")
    assert sorted(fresh_proj.take_log()) == ["a", "b"], result.describe()


def _commands(result) -> list[str]:
    return [line for line in result.lines if not line.startswith("#")]


def test_n_on_a_fresh_project_prints_every_command_and_runs_nothing(fresh_proj):
    fresh_proj.rules(THREE)
    fresh_proj.write("src.txt", "s\n")
    result = fresh_proj.build("-n", "-j1", verbose=False)
    assert sorted(_commands(result)) == sorted([
        "cp src.txt a.txt && echo a >> ran.log", "cp a.txt b.txt && echo b >> ran.log",
        "cp b.txt c.txt && echo c >> ran.log", "echo x > x.txt && echo x >> ran.log"]), \
        result.describe()
    assert "MAKE X" not in result.stdout, result.describe()    # commands, not descriptions
    for path in ("a.txt", "b.txt", "c.txt", "x.txt", "ran.log"):
        assert not fresh_proj.exists(path), path
    assert not fresh_proj.exists(".rlmake/state.db")
    # a real build shows the description in its progress line
    built = fresh_proj.build(verbose=False)
    assert any(line.startswith("[") and line.endswith("] MAKE X") for line in built.lines), \
        built.describe()


def test_n_prints_only_the_stale_jobs_and_their_dependents(proj):
    proj.rules(THREE)
    proj.write("src.txt", "s\n")
    proj.build()
    proj.take_log()
    proj.noop()
    (proj.root / "a.txt").unlink()
    proj.write("src.txt", "t\n")
    result = proj.build("-n", verbose=False)
    assert _commands(result) == ["cp src.txt a.txt && echo a >> ran.log",
                                 "cp a.txt b.txt && echo b >> ran.log",
                                 "cp b.txt c.txt && echo c >> ran.log"], result.describe()
    assert not proj.exists("a.txt")
    assert proj.read("b.txt") == "s\n"
    assert proj.take_log() == []
    # with -v, each command comes with why it would run
    verbose = proj.build("-n")
    assert any(line.startswith("# c.txt") for line in verbose.lines), verbose.describe()
    # nothing stale: nothing printed
    proj.build()
    proj.take_log()
    proj.noop()
    quiet = proj.build("-n", verbose=False)
    assert _commands(quiet) == [], quiet.describe()
    assert proj.take_log() == []


def test_hash_fast_reruns_on_touch_but_content_mode_does_not(fresh_proj):
    fresh_proj.rules(COPY.format(command="cp in.txt out.txt"))
    fresh_proj.write("in.txt", "hello\n")

    fresh_proj.build()
    fresh_proj.take_log()
    fresh_proj.touch_later("in.txt")
    assert fresh_proj.build().ran == set()
    assert fresh_proj.take_log() == []

    fresh_proj.build("--hash", "fast")                # digests differ between modes: one rerun
    fresh_proj.take_log()
    steady = fresh_proj.build("--hash", "fast")
    assert steady.ran == set(), steady.describe()
    fresh_proj.touch_later("in.txt")
    touched = fresh_proj.build("--hash", "fast")
    assert touched.ran == {"out.txt"}, touched.describe()
    assert fresh_proj.take_log() == ["out"]
    fresh_proj.write("in.txt", "changed\n")
    fresh_proj.build("--hash", "fast")
    assert fresh_proj.read("out.txt") == "changed\n"


# --- depfiles (written by hand, no compiler) ------------------------------------------------

DEPFILE = """
rules:
  out.txt:
    deps: [main.txt]
    depfile: "deps/{{ target }}.d"
    command: >-
      cat main.txt $(cat list.txt) > out.txt &&
      printf 'out.txt: main.txt %s\\n' "$(cat list.txt)" > deps/out.txt.d &&
      echo out >> ran.log
"""


def test_depfile_deps_are_tracked_from_the_next_build_on(proj):
    proj.rules(DEPFILE)
    proj.write("main.txt", "main\n")
    proj.write("list.txt", "h1.txt")           # which extra file the command reads
    proj.write("h1.txt", "one\n")
    proj.build()                                # deps/ is created for the depfile
    assert proj.read("out.txt") == "main\none\n"
    assert proj.read("deps/out.txt.d") == "out.txt: main.txt h1.txt\n"
    assert proj.take_log() == ["out"]
    proj.noop()

    proj.write("h1.txt", "uno\n")
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert "h1.txt" in result.stdout, result.describe()
    assert proj.read("out.txt") == "main\nuno\n"
    proj.take_log()
    proj.noop()

    proj.touch_later("h1.txt")
    proj.noop()

    # the listed file goes away (and the command stops reading it): a rerun, not an error
    proj.write("list.txt", "")
    (proj.root / "h1.txt").unlink()
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()
    assert proj.read("out.txt") == "main\n"
    proj.noop()


def test_command_that_does_not_write_its_depfile_fails_naming_it(fresh_proj):
    fresh_proj.rules("""
        rules:
          out.txt:
            depfile: out.d
            command: "echo x > out.txt"
    """)
    result = fresh_proj.build(expect=1)
    assert "out.d" in result.stderr, result.describe()
    assert not fresh_proj.exists("out.txt")


def test_malformed_depfile_fails_naming_file_and_line(fresh_proj):
    fresh_proj.rules("""
        rules:
          out.txt:
            depfile: out.d
            command: "echo x > out.txt && printf 'out.txt: a\\nno colon here\\n' > out.d"
    """)
    result = fresh_proj.build(expect=1)
    assert "out.d:2" in result.stderr, result.describe()
    assert not fresh_proj.exists("out.txt")


# --- the local artifact cache, on by default ------------------------------------------------

def test_default_cache_restores_a_missing_output_without_running(cached_proj):
    proj = cached_proj
    proj.rules(COPY.format(command="cp in.txt out.txt"))
    proj.write("in.txt", "hello\n")
    proj.build()
    assert proj.take_log() == ["out"]
    proj.noop()
    (proj.root / "out.txt").unlink()
    result = proj.build()
    assert result.ran == {"out.txt"}, result.describe()          # -v: Miss ...
    assert "restored" in result.stdout, result.describe()
    assert proj.take_log() == []                                  # the command did not run
    assert proj.read("out.txt") == "hello\n"
    proj.noop()
    proj.write("in.txt", "changed\n")                           # a new key: it runs
    proj.build()
    assert proj.take_log() == ["out"]
    assert proj.read("out.txt") == "changed\n"


def test_default_cache_brings_back_the_output_of_an_earlier_var_value(cached_proj):
    proj = cached_proj
    proj.rules(VARS)
    proj.build()
    proj.build("msg=x")
    assert proj.take_log() == ["out", "out"]
    assert proj.read("out.txt") == "x\n"
    result = proj.build()                                         # back to msg: hello
    assert result.ran == {"out.txt"}, result.describe()
    assert proj.read("out.txt") == "hello\n"
    assert proj.take_log() == []
    proj.noop()


def test_default_cache_replaces_an_output_edited_by_hand(cached_proj):
    proj = cached_proj
    proj.rules(CHAIN)
    proj.write("a.txt", "x y z\n")
    proj.build()
    proj.noop()
    proj.write("b.txt", "edited by hand\n")
    result = proj.build()
    assert result.ran == {"b.txt"}, result.describe()
    assert result.cached == {"c.txt"}, result.describe()
    assert proj.read("b.txt") == "xyz\n"
    proj.noop()


# --- files and state ----------------------------------------------------------------------

def test_parent_directories_of_outputs_are_created(fresh_proj):
    fresh_proj.rules("""
        rules:
          out/sub/x.txt:
            outputs: [other/deep/y.txt]
            command: "echo x > out/sub/x.txt && echo y > other/deep/y.txt"
    """)
    fresh_proj.build()
    assert fresh_proj.read("out/sub/x.txt") == "x\n"
    assert fresh_proj.read("other/deep/y.txt") == "y\n"
    assert fresh_proj.build().ran == set()


def test_state_db_is_plain_sqlite(fresh_proj):
    fresh_proj.rules(THREE)
    fresh_proj.write("src.txt", "s\n")
    fresh_proj.build()
    fresh_proj.write("src.txt", "t\n")
    fresh_proj.build()
    path = fresh_proj.root / ".rlmake" / "state.db"
    assert path.exists()
    conn = sqlite3.connect(path)
    try:
        # 1 when these tests were written; it follows the migrations rlmake ships
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        targets = {row[0] for row in conn.execute("SELECT target FROM jobs")}
        assert {"a.txt", "b.txt", "c.txt", "x.txt"} <= targets
        statuses = [row[0] for row in conn.execute("SELECT status FROM executions")]
        assert statuses == ["succeeded", "succeeded"], statuses
    finally:
        conn.close()
    # and a build after someone read the database is still a no-op
    assert fresh_proj.build().ran == set()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
def test_commands_get_default_sigpipe_and_none_of_rlmakes_descriptors(fresh_proj):
    # Python ignores SIGPIPE and may hold inheritable descriptors (here: a pipe its own
    # caller passed down); a command must see neither, whether exec'd or run by sh.
    fresh_proj.rules("""
        rules:
          all: {deps: [ignored.txt, fds.txt]}
          ignored.txt: {command: "grep SigIgn /proc/self/status > ignored.txt"}
          fds.txt: {command: "ls /proc/self/fd > fds.txt"}
        """)
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        done = subprocess.run([*rlmake_exe(), "build"], cwd=fresh_proj.root, env=build_env(),
                              capture_output=True, text=True, timeout=60, pass_fds=(write_end,))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    ignored = int(fresh_proj.read("ignored.txt").split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    descriptors = {int(name) for name in fresh_proj.read("fds.txt").split()}
    assert write_end not in descriptors and descriptors <= {0, 1, 2, 3}  # 3: ls's own listing


def test_a_program_gone_between_two_commands_fails_the_job_not_the_build(fresh_proj):
    # `tool` is found on PATH for the first command and exec'd directly; when the third
    # command runs it is gone, and the job must fail with 127 like a shell would say.
    fresh_proj.rules("""
        rules:
          out.txt:
            command: ["tool", "rm bin/tool", "tool"]
          other.txt: {command: "echo other > other.txt"}
        """)
    fresh_proj.write("bin/tool", "#!/bin/sh\necho ran tool\n")
    os.chmod(fresh_proj.root / "bin/tool", 0o755)
    env = build_env(PATH=f"{fresh_proj.root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = fresh_proj.build("-k", "-j1", "out.txt", "other.txt", expect=1, env=env)
    assert "FAILED: out.txt" in result.stderr and "Traceback" not in result.stderr, \
        result.describe()
    assert fresh_proj.read("other.txt") == "other\n"
