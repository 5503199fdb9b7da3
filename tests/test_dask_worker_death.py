"""A Dask worker killed mid-job: its commands die with it, and the rerun never races them.

A real cluster on 127.0.0.1 (test_dask_executor's helpers). Each job's command runs in
a session of its own, so SIGKILL to the `dask worker` process group (nanny and worker)
does not reach it; rlmake's watcher beside it must kill it, and in shared mode the
job's lock file must hold Dask's rerun of the job back while any process of the old
copy lives. The commands log `start`, `tick` and `end` lines with their process
group, so the log shows whether two copies of a job ever ran at once.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from buildkit import finish, kill_group
from test_dask_executor import _q, rlmake, running_cluster, start_rlmake

pytestmark = pytest.mark.integration

psutil = pytest.importorskip("psutil")

JOBS = 4
TICKS = 40              # a job writes for about 4 s


def write_ticking(root: Path, escape: bool = False) -> None:
    """JOBS jobs that log `start JOB GROUP PARENT`, a tick every 0.1 s, then copy their
    source and log `end JOB GROUP`. With `escape`, each also leaves behind a process in
    a session of its own (out of the watcher's reach) that logs `late JOB` 6 s on, after
    the job has ended."""
    lines = ["default: all", "rules:"]
    (root / "src").mkdir(parents=True)
    for i in range(JOBS):
        (root / f"src/f{i}.txt").write_text(f"ticking source {i}\n" * (i + 1))
        left = (f"setsid sh -c 'sleep 6; echo late {i} >> trace.log' "
                "</dev/null >/dev/null 2>&1 & " if escape else "")
        command = (f"echo start {i} $$ $PPID >> trace.log; {left}k=0; "
                   f"while [ $k -lt {TICKS} ]; do echo tick {i} $$ >> trace.log; sleep 0.1; "
                   f"k=$((k+1)); done; cp src/f{i}.txt out/f{i}.txt; "
                   f"echo end {i} $$ >> trace.log")
        lines.extend([f"  out/f{i}.txt:", f"    deps: [src/f{i}.txt]",
                      f"    command: {_q(command)}"])
    lines.extend(["  all:", "    deps:"] + [f"      - out/f{i}.txt" for i in range(JOBS)])
    (root / "Rulesfile.yaml").write_text("\n".join(lines) + "\n")
    (root / "rlmake.toml").write_text("[cache]\nlocal = false\n")


def trace(root: Path) -> list[list[str]]:
    try:
        text = (root / "trace.log").read_text()
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines() if line.strip()]


def running_on(root: Path, pids: set[int]) -> dict[int, int]:
    """Job -> process group, of the jobs started by one of `pids` that have not ended."""
    running: dict[int, tuple[int, int]] = {}
    for words in trace(root):
        if words[0] == "start" and len(words) == 4:
            running[int(words[1])] = (int(words[2]), int(words[3]))
        elif words[0] == "end" and len(words) == 3:
            running.pop(int(words[1]), None)
    return {job: group for job, (group, parent) in running.items() if parent in pids}


def live_members(group: int) -> list[int]:
    """Processes of the group that have not exited (zombies do not count)."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def overlaps(root: Path) -> list[str]:
    """Lines written by one copy of a job after another copy of it had started."""
    latest: dict[int, str] = {}          # job -> the group of its newest copy
    problems = []
    for words in trace(root):
        kind, job = words[0], int(words[1])
        if kind == "late":
            continue
        group = words[2]
        if kind == "start":
            latest[job] = group
        elif latest.get(job) != group:
            problems.append(" ".join(words))
    return problems


def outputs_correct(root: Path) -> bool:
    return all((root / f"out/f{i}.txt").is_file()
               and (root / f"out/f{i}.txt").read_bytes() == (root / f"src/f{i}.txt").read_bytes()
               for i in range(JOBS))


def kill_worker_mid_job(cluster, project: Path, build) -> dict[int, int]:
    """SIGKILL worker 0 (nanny and worker) while one of its jobs runs; those jobs."""
    victim = cluster.process_ids(cluster.workers[0])
    deadline = time.monotonic() + 60
    while not running_on(project, victim):
        assert build.poll() is None, finish(build).describe()
        assert time.monotonic() < deadline, "worker 0 ran no job"
        time.sleep(0.02)
    time.sleep(0.3)     # into the job's ticking, so that the old copy has a past to race
    lost = running_on(project, victim)
    assert lost, "the job on worker 0 ended before it could be killed"
    cluster.kill(cluster.workers[0])
    return lost


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path / "cluster") as started:
        yield started


def test_a_killed_workers_command_dies_and_its_rerun_does_not_race_it(cluster, tmp_path):
    project = tmp_path / "proj"
    write_ticking(project)
    build = start_rlmake(project, "build", "-j2", "--executor", "dask",
                         "--scheduler", cluster.address)
    try:
        lost = kill_worker_mid_job(cluster, project, build)
        killed_at = time.monotonic()
        for job, group in lost.items():
            while live_members(group):
                assert time.monotonic() - killed_at < 2.5, \
                    f"job {job}'s command (group {group}) outlived its worker: " \
                    f"{live_members(group)}"
                time.sleep(0.02)
        result = finish(build, timeout=120)
    finally:
        kill_group(build)

    assert result.returncode == 0, result.describe()
    assert overlaps(project) == [], "two copies of a job ran at once"
    assert outputs_correct(project), result.describe()
    starts = [words for words in trace(project) if words[0] == "start"]
    assert {int(words[1]) for words in starts} == set(range(JOBS))
    rerun = [job for job in lost if sum(int(w[1]) == job for w in starts) > 1]
    assert rerun, f"Dask did not run the lost job again: {starts}"
    assert rlmake(project, "build", "-v", "--executor", "local").ran == set()


def test_a_rerun_waits_for_what_the_killed_copy_left_running(cluster, tmp_path):
    """A process of the old copy that left its group (setsid) is out of the watcher's
    reach, but holds the job's lock: Dask's rerun starts only once it has exited."""
    project = tmp_path / "proj"
    write_ticking(project, escape=True)
    build = start_rlmake(project, "build", "-j2", "--executor", "dask",
                         "--scheduler", cluster.address)
    try:
        lost = kill_worker_mid_job(cluster, project, build)
        result = finish(build, timeout=120)
    finally:
        kill_group(build)

    assert result.returncode == 0, result.describe()
    assert outputs_correct(project), result.describe()
    for job in lost:
        lines = [words for words in trace(project) if words[1] == str(job)]
        starts = [n for n, words in enumerate(lines) if words[0] == "start"]
        assert len(starts) == 2, lines
        late = [n for n, words in enumerate(lines) if words[0] == "late"]
        # the killed copy's leftover logged `late` before the rerun could start
        assert late and late[0] < starts[1], lines
    # a job that ended normally let its lock go, though its leftover still holds the file
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if "sleep 6; echo late" in " ".join(p.info["cmdline"] or [])]
    assert leftovers, "no leftover outlived its job: nothing was checked"
    for lock in (project / ".rlmake" / "dask" / "locks").iterdir():
        with open(lock) as stream:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)     # raises if held


# --- the two parts, without a cluster -------------------------------------------------------

def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"], start_new_session=True)


def test_the_watcher_kills_the_armed_group_when_its_worker_lets_go():
    from rlmake.executors.tether import Tether

    command = sleeper()
    try:
        tether = Tether()
        tether.arm(command.pid)
        tether.close()          # the pipe's end, as when the worker dies
        assert command.wait(timeout=5) == -signal.SIGKILL
    finally:
        command.kill()
        command.wait()


def test_a_disarmed_watcher_kills_nothing():
    from rlmake.executors.tether import Tether

    command = sleeper()
    try:
        with Tether() as tether:
            tether.arm(command.pid)
            tether.disarm()
        assert command.poll() is None
    finally:
        command.kill()
        command.wait()


def test_a_job_lock_waits_for_the_holder_and_gives_up_when_cancelled(tmp_path):
    from rlmake.executors.tether import JobLock

    path = str(tmp_path / "locks" / "job")
    held = JobLock.acquire(path, lambda: False)
    assert held is not None
    asked = []
    assert JobLock.acquire(path, lambda: asked.append(1) or len(asked) > 2) is None
    assert len(asked) == 3
    held.release()
    again = JobLock.acquire(path, lambda: True)     # free: taken without asking
    assert again is not None
    again.release()
