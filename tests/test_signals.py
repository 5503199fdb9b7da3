"""Signals and commands that could outlive rlmake.

Each command runs in a session of its own, so nothing but rlmake stops it:
- SIGHUP (terminal or ssh closed) interrupts like Ctrl-C and SIGTERM: commands
  stopped, changed outputs removed, exit 130; with SIGHUP ignored (nohup) the
  build goes on;
- a second interrupt during the first one's grace period kills at once;
- after rlmake is SIGKILLed, the next build stops the commands it left running,
  says so, never records what they would have written, and runs their jobs
  (test_unfinished_jobs_run_again has the rest of that);
- `.rlmake/running` never makes a build signal a process that merely reuses a
  recorded pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from buildkit import Project, build_env, finish, kill_group, pid_alive, rlmake_exe, wait_until_dead
from rlmake.executors import leftovers

# echo start > o1; (with HOLD=1 in the environment, which is not part of the job's key:
# up to 30 s, until the test creates `release`); cat s1.txt >> o1
MANGLER = """
rules:
  o1:
    deps: [s1.txt]
    command: >-
      echo $$ > o1.pid; echo start > o1;
      i=0; while [ "${HOLD:-}" = 1 ] && [ ! -e release ] && [ $i -lt 600 ];
      do sleep 0.05; i=$((i+1)); done;
      cat s1.txt >> o1
"""
HELD = build_env(HOLD="1")


@pytest.fixture
def fresh_proj(tmp_path) -> Project:
    """A project whose files are not aged (as buildkit's fixture of that name)."""
    return Project(tmp_path / "proj")


def mangler(project: Project) -> None:
    project.rules(MANGLER)
    project.write("s1.txt", "hello\n")


def command_pid(project: Project) -> int:
    project.wait_for("o1.pid")
    deadline = time.monotonic() + 5
    while not project.read("o1.pid").strip():
        assert time.monotonic() < deadline, "o1.pid stayed empty"
        time.sleep(0.02)
    return int(project.read("o1.pid"))


@pytest.mark.integration
def test_sighup_interrupts_like_sigterm(fresh_proj):
    mangler(fresh_proj)
    process = fresh_proj.start(env=HELD)
    try:
        command = command_pid(fresh_proj)
        process.send_signal(signal.SIGHUP)          # rlmake only, as a closed terminal does
        result = finish(process, timeout=15)
    finally:
        kill_group(process)
    assert result.returncode == 130, result.describe()
    assert "interrupted" in result.stderr, result.describe()
    assert wait_until_dead(command, 2.0), "the command outlived a SIGHUPed rlmake"
    assert not fresh_proj.exists("o1"), "the interrupted job's partial output was kept"
    done = fresh_proj.build()
    assert done.ran == {"o1"}, done.describe()
    assert fresh_proj.read("o1") == "start\nhello\n"
    assert fresh_proj.build().ran == set()


@pytest.mark.integration
def test_nohup_build_survives_the_hangup(fresh_proj):
    mangler(fresh_proj)
    process = subprocess.Popen(
        [*rlmake_exe(), "build"], cwd=fresh_proj.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=HELD, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))   # as nohup does
    try:
        command = command_pid(fresh_proj)
        process.send_signal(signal.SIGHUP)
        assert pid_alive(command) and process.poll() is None
        fresh_proj.write("release", "")
        result = finish(process, timeout=30)
    finally:
        kill_group(process)
    assert result.returncode == 0, result.describe()
    assert fresh_proj.read("o1") == "start\nhello\n"


STUBBORN = """
rules:
  stubborn.txt:
    command: >-
      trap 'echo > termed' TERM; echo partial > stubborn.txt;
      (trap '' TERM; exec sleep 30) & echo $! > sleeper.pid; wait $!; wait $!;
      echo done > stubborn.txt
"""


@pytest.mark.integration
@pytest.mark.parametrize("first, second", [(signal.SIGINT, signal.SIGINT),
                                           (signal.SIGTERM, signal.SIGHUP)],
                         ids=["INT-INT", "TERM-HUP"])
def test_a_second_interrupt_kills_at_once(fresh_proj, first, second):
    fresh_proj.rules(STUBBORN)
    process = fresh_proj.start()
    try:
        fresh_proj.wait_for("sleeper.pid")
        time.sleep(0.1)                 # let the shell reach `wait` (the trap needs it)
        process.send_signal(first)
        fresh_proj.wait_for("termed")   # the command shrugged off SIGTERM: grace under way
        sleeper = int(fresh_proj.read("sleeper.pid"))
        sent = time.monotonic()
        process.send_signal(second)
        result = finish(process, timeout=15)
        took = time.monotonic() - sent
    finally:
        kill_group(process)
    assert result.returncode == 130, result.describe()
    assert took < 1.5, f"rlmake took {took:.2f}s after the second signal (the grace is 2s)"
    assert wait_until_dead(sleeper, 1.0), "the command's group outlived the second signal"
    assert not fresh_proj.exists("stubborn.txt")
    # the stopped command's job stays listed as unfinished, for the next build to run
    assert leftovers.read_log(str(fresh_proj.root / ".rlmake/running")).unfinished \
        == {"stubborn.txt"}


@pytest.mark.integration
def test_the_next_build_stops_commands_a_killed_build_left_running(fresh_proj):
    mangler(fresh_proj)
    process = fresh_proj.start(env=HELD)
    try:
        command = command_pid(fresh_proj)
        process.send_signal(signal.SIGKILL)     # rlmake alone: its command runs on
        process.communicate(timeout=10)
        assert pid_alive(command)
        result = fresh_proj.build()
    finally:
        kill_group(process)
        fresh_proj.write("release", "")
    assert "stopped 1 command left running by an earlier build" in result.stderr, \
        result.describe()
    assert not pid_alive(command)
    assert fresh_proj.read("o1") == "start\nhello\n"        # this build's own run
    assert fresh_proj.build().ran == set()
    assert fresh_proj.read("o1") == "start\nhello\n"
    assert not fresh_proj.exists(".rlmake/running")


# --- the record itself --------------------------------------------------------------------

TOKEN = "0123456789abcdef"


def _sleeper(token: str | None = TOKEN) -> subprocess.Popen:
    """A command in a session of its own, carrying a build's token as rlmake's do."""
    env = dict(os.environ, **({leftovers.TOKEN_VARIABLE: token} if token else {}))
    process = subprocess.Popen(["sleep", "30"], start_new_session=True, env=env)
    # Popen returns once exec has closed the child's descriptors, but the kernel sets up
    # the new environment after that: on a busy machine /proc/PID/environ can still be
    # empty for a moment, and a test that read it then would find no token.
    deadline = time.monotonic() + 10
    while _environment(process.pid) == b"" and time.monotonic() < deadline:
        time.sleep(0.001)
    return process


def _environment(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as stream:
            return stream.read()
    except OSError:
        return b"gone"


@pytest.mark.integration
def test_a_group_the_log_names_is_left_alone_unless_it_carries_a_build_token(tmp_path):
    """Anyone who can write .rlmake/running (an archive can ship one) could name any
    process group: only one whose process carries a logged build's token is stopped."""
    victim = _sleeper(token=None)
    try:
        (tmp_path / "running").write_text(f"={TOKEN}\n+{victim.pid} 0 99999999999\n")
        assert leftovers.stop_leftovers(leftovers.logged(str(tmp_path)), lambda text: None) == 0
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.integration
def test_a_reused_pid_is_never_signalled(tmp_path):
    """A recorded group whose leader now is another process (started at another time)
    is left alone; the recorded one is stopped."""
    stranger, ours = _sleeper(), _sleeper()
    try:
        assert leftovers.start_time(stranger.pid) is not None
        since = leftovers.start_time(ours.pid)
        earlier = leftovers.start_time(stranger.pid) - 1000    # "our" command, long gone
        (tmp_path / "running").write_text(f"={TOKEN}\n+{stranger.pid} {earlier - 5} {earlier}\n"
                                          f"+{ours.pid} {since - 1} {since + 1}\n")
        said = []
        assert leftovers.stop_leftovers(leftovers.logged(str(tmp_path)), said.append) == 1
        assert said == ["stopped 1 command left running by an earlier build"]
        assert stranger.poll() is None
        assert ours.wait(timeout=5) == -signal.SIGTERM
    finally:
        for process in (stranger, ours):
            process.kill()
            process.wait()


@pytest.mark.integration
def test_record_lists_running_commands_only_until_the_build_ends(tmp_path):
    record = leftovers.CommandRecord(str(tmp_path))
    since = record.clock("sleeper")
    child = _sleeper()
    try:
        record.started(child.pid, since)
        record.flush()
        tokens, listed, unfinished = leftovers.read_log(record.path)
        assert tokens == {record.token} and list(listed) == [child.pid]
        assert unfinished == {"sleeper"}
        assert leftovers.group_alive(child.pid, listed[child.pid])
        child.kill()
        child.wait()
        record.ended(child.pid)
        record.close()
        assert not os.path.exists(record.path)
    finally:
        child.kill()
        child.wait()


if sys.platform != "linux":     # the record needs /proc
    pytestmark = pytest.mark.skip("Linux only")


# A signal that lands while Python runs exec'd source (as dataclasses and namedtuples
# make their methods) and whose KeyboardInterrupt rlmake then handles must still end
# the process with rlmake's status, not by SIGINT. Run with -m, as rlmake is: with -c
# or a script, SystemExit ends the process before CPython looks at its flag.
HANDLED_IN_EXEC = """
import os, signal, sys
from rlmake.guard import signals_as_ctrl_c
signals_as_ctrl_c()
try:
    exec("os.kill(os.getpid(), signal.SIGHUP)\\nfor i in range(10 ** 6): pass")
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.integration
def test_an_interrupt_handled_after_exec_still_exits_130(tmp_path):
    (tmp_path / "handled_in_exec.py").write_text(HANDLED_IN_EXEC)
    done = subprocess.run([sys.executable, "-m", "handled_in_exec"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, env=build_env())
    assert done.returncode == 130, (done.returncode, done.stderr)


@pytest.mark.integration
def test_a_command_started_but_not_yet_listed_is_found_by_its_token(tmp_path):
    """rlmake killed between a spawn and the log line: the build's token, logged before
    any spawn and in every command's environment, still finds the command."""
    (tmp_path / "running").write_text("=feed01\n")
    child = subprocess.Popen(["sleep", "30"], start_new_session=True,
                             env={**build_env(), leftovers.TOKEN_VARIABLE: "feed01"})
    other = subprocess.Popen(["sleep", "30"], start_new_session=True,
                             env={**build_env(), leftovers.TOKEN_VARIABLE: "beef02"})
    try:
        said = []
        assert leftovers.stop_leftovers(leftovers.logged(str(tmp_path)), said.append) == 1, said
        assert child.wait(timeout=5) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for process in (child, other):
            process.kill()
            process.wait()
