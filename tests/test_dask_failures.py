"""What a CI engineer met with a hand-started `dask scheduler` and workers on 127.0.0.1,
through the real command line: bad addresses, a scheduler with no workers, and -j
taken from the cluster rather than from the client's CPUs. (The scheduler lost
mid-build is test_dask_executor.test_scheduler_killed_mid_build.)"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from buildkit import BuildResult, build_env
from checkout import RLMAKE
from test_dask_executor import running_cluster, write_slow

pytestmark = pytest.mark.integration

distributed = pytest.importorskip("distributed")

SOURCES_ONLY = "rules:\n  all:\n    deps: [in.txt]\n"


def run(project: Path, *args: str, timeout: float = 90, **env: str) -> BuildResult:
    started = time.monotonic()
    done = subprocess.run([*RLMAKE, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env=build_env(**env))
    return BuildResult(list(args), done.returncode, done.stdout, done.stderr,
                       time.monotonic() - started)


def sources_only(root: Path, toml: str | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "Rulesfile.yaml").write_text(SOURCES_ONLY)
    (root / "in.txt").write_text("in\n")
    if toml is not None:
        (root / "rlmake.toml").write_text(toml)
    return root


# --- addresses that cannot be a scheduler's: refused before any connection ----------------------

@pytest.mark.parametrize("address", ["garbage", "http://127.0.0.1:1", "foo://x:1", "",
                                     "tcp://127.0.0.1:99999", "127.0.0.1:0"])
def test_a_bad_address_is_a_usage_error_through_the_real_cli(tmp_path, address):
    project = sources_only(tmp_path / "proj")
    result = run(project, "build", "--executor", "dask", "--scheduler", address, timeout=30)
    assert result.returncode == 2, result.describe()
    assert f"rlmake: error: bad Dask scheduler address '{address}'" in result.stderr
    assert "Traceback" not in result.stderr, result.describe()
    assert not (project / ".rlmake").exists(), "refused only after it locked or planned"


@pytest.mark.parametrize("toml, said", [
    ('scheduler = ""', "bad Dask scheduler address ''"),
    ("scheduler = 8786", "[build] scheduler must be a string in quotes, not 8786"),
    ('scheduler = "http://127.0.0.1:8787"', "is not a protocol Dask schedulers listen on"),
    ('file_mode = "nfs"', "unknown file mode 'nfs'"),
])
def test_a_bad_setting_in_rlmake_toml_is_a_usage_error(tmp_path, toml, said):
    project = sources_only(tmp_path / "proj", f'[build]\nexecutor = "dask"\n{toml}\n')
    result = run(project, "build", timeout=30)
    assert result.returncode == 2, result.describe()
    assert said in result.stderr, result.describe()
    assert "Traceback" not in result.stderr
    assert not (project / ".rlmake").exists(), "refused only after it locked or connected"


# --- a scheduler with no workers -------------------------------------------------------------------

@pytest.fixture(scope="module")
def lonely_scheduler(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("dask-lonely"), workers=0) as started:
        yield started


@pytest.mark.parametrize("mode", ["auto", "staged"])
def test_a_scheduler_without_workers_is_named_not_blamed_on_the_filesystem(
        lonely_scheduler, tmp_path, mode):
    project = tmp_path / "proj"
    write_slow(project)
    files = ["--dask-files", "staged", "--cache", str(tmp_path / "store"), "--cache-write"] \
        if mode == "staged" else []
    result = run(project, "build", "--executor", "dask", "--scheduler",
                 lonely_scheduler.address, *files, RLMAKE_DASK_WORKER_WAIT="1")
    assert result.returncode == 2, result.describe()
    assert (f"rlmake: error: no workers connected to the Dask scheduler at "
            f"{lonely_scheduler.address} after 1 s") in result.stderr, result.describe()
    assert "cannot see" not in result.stderr, result.describe()
    assert not (project / "trace.log").exists(), "a job ran without a worker"


# --- -j defaults to the cluster's threads ------------------------------------------------------------

def barrier_project(root: Path, count: int) -> Path:
    """`count` jobs that each wait until all `count` have started: the build succeeds
    only if that many run at once (a job that waits 20 s alone fails)."""
    root.mkdir(parents=True)
    outputs = ", ".join(f'"out/{i}.txt"' for i in range(count))
    (root / "Rulesfile.yaml").write_text(
        "default: all\nrules:\n"
        + "".join(f'  "out/{i}.txt":\n    command: >-\n      '
                  f"mkdir -p started && touch started/{i}; n=0; "
                  f'while [ "$(ls started | wc -l)" -lt {count} ] && [ $n -lt 400 ]; '
                  f"do sleep 0.05; n=$((n+1)); done; "
                  f'[ "$(ls started | wc -l)" -ge {count} ] && echo ran > out/{i}.txt\n'
                  for i in range(count))
        + f"  all:\n    deps: [{outputs}]\n")
    return root


def test_jobs_default_to_the_threads_of_the_clusters_workers(tmp_path):
    cpus = os.cpu_count() or 1
    if cpus > 8:
        pytest.skip("a cluster with more threads than this machine's CPUs would be too big")
    threads = cpus // 2 + 1                 # two workers: more threads than CPUs here
    count = 2 * threads
    project = barrier_project(tmp_path / "proj", count)
    with running_cluster(tmp_path / "cluster", workers=2, threads=threads) as cluster:
        result = run(project, "build", "--executor", "dask", "--scheduler", cluster.address)
    assert result.returncode == 0, result.describe()
    assert f"(2 workers, {count} threads)" in result.stderr, result.describe()
    assert sorted(os.listdir(project / "out")) == sorted(f"{i}.txt" for i in range(count))


def test_build_help_says_where_the_default_of_j_comes_from(tmp_path):
    result = run(tmp_path, "build", "--help", timeout=30)
    assert result.returncode == 0, result.describe()
    text = " ".join(result.stdout.split())
    assert "with --executor dask, the threads of the cluster's workers" in text, text
    assert "3 the executor failed" in text, text
