"""Staged Dask builds: write access to the store, and workers that lack what staging needs.

Real clusters on 127.0.0.1 (test_dask_executor's helpers) and a real S3 service
(moto_server, tests/s3server.py). Workers are shaped per cluster:

- `apart`: each worker runs in a mount namespace of its own where the directory
  holding the test projects is an empty tmpfs (so it cannot see the project, and
  `auto` must stage) and one store directory is mounted read-only (a store that
  root, too, cannot write);
- `no_credentials`: workers see the project but have no AWS credentials;
- `one_without_rlmake`: one of the two workers cannot import rlmake.

What is checked: staging without --cache-write stops at once (exit 2) saying what it
needs, while `auto` that finds a shared filesystem needs no write access; a worker
without credentials, without write access, without the same store or without rlmake
stops the build once, naming the worker and the reason, before any job runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from buildkit import BuildResult, build_env
from s3server import CREDENTIALS, MotoServer
from test_dask_executor import Cluster, closed_port, rlmake_exe, tree, write_generated

pytestmark = pytest.mark.integration

BUCKET = "staged"
NO_METADATA = {"AWS_EC2_METADATA_DISABLED": "true"}    # boto3 must never ask 169.254.169.254
NEEDS_WRITE = "pass --cache-write (or set RLMAKE_CACHE_WRITE=1), with write credentials"


# --- clusters whose workers differ from the client ---------------------------------------

Shape = Callable[[int, list[str], dict[str, str]], tuple[list[str], dict[str, str]]]


@dataclass
class ShapedCluster(Cluster):
    """A cluster whose worker n runs `shape(n, argv, env)` instead of argv with env."""

    shape: Shape | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        argv, env = [self.python, "-m", "dask", *args], build_env()
        if name.startswith("worker") and self.shape is not None:
            argv, env = self.shape(int(name.removeprefix("worker")), argv, env)
        with open(self.root / f"{name}.log", "w") as log:
            return subprocess.Popen(argv, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)


@contextlib.contextmanager
def shaped_cluster(root: Path, shape: Shape):
    root.mkdir(parents=True, exist_ok=True)
    cluster = ShapedCluster(root, sys.executable, shape=shape)
    try:
        cluster.start(2)
        yield cluster
    finally:
        cluster.stop()


def without_aws(env: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in env.items() if not k.startswith("AWS_")}, **NO_METADATA,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


# Mounts made in the worker's own namespace, then the worker itself.
APART = ('mount -t tmpfs rlmake-test "$HIDE" && mount --bind "$READ_ONLY" "$READ_ONLY" '
         '&& mount -o remount,bind,ro "$READ_ONLY" && exec "$@"')


def namespaces_work() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True).returncode == 0


@dataclass
class Apart:
    cluster: Cluster
    hidden: Path            # projects here are invisible to the workers
    read_only: Path         # a store directory the workers cannot write


@pytest.fixture(scope="module")
def apart(tmp_path_factory, moto):
    if not namespaces_work():
        pytest.skip("needs unshare --mount (root)")
    base = tmp_path_factory.mktemp("apart")
    hidden, read_only = base / "hidden", base / "read-only"
    hidden.mkdir()
    (read_only / "store").mkdir(parents=True)

    def shape(n, argv, env):
        env = {**env, **CREDENTIALS, **NO_METADATA, "HIDE": str(hidden),
               "READ_ONLY": str(read_only)}
        return ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", APART, "sh", *argv], env

    with shaped_cluster(base / "cluster", shape) as cluster:
        yield Apart(cluster, hidden, read_only)


@pytest.fixture(scope="module")
def no_credentials(tmp_path_factory):
    with shaped_cluster(tmp_path_factory.mktemp("no-credentials"),
                        lambda n, argv, env: (argv, without_aws(env))) as cluster:
        yield cluster


NO_RLMAKE = '''
import sys

class NoRlmake:
    """As if rlmake were not installed: its import fails as a missing module's does."""

    def find_spec(self, name, path=None, target=None):
        if name == "rlmake" or name.startswith("rlmake."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoRlmake())
'''


@pytest.fixture(scope="module")
def one_without_rlmake(tmp_path_factory):
    root = tmp_path_factory.mktemp("no-rlmake")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(NO_RLMAKE)

    def shape(n, argv, env):
        if n == 1:
            env = {**env, "PYTHONPATH": str(root / "site")}
        return argv, {**env, **CREDENTIALS, **NO_METADATA}

    with shaped_cluster(root / "cluster", shape) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()


# --- running rlmake ---------------------------------------------------------------------------

def build(project: Path, moto: MotoServer, *args: str, expect: int | None = 0,
          timeout: float = 120) -> BuildResult:
    env = build_env(RLMAKE_CACHE_ENDPOINT=moto.endpoint, **CREDENTIALS, **NO_METADATA)
    argv = ["build", "-j2", *map(str, args)]
    done = subprocess.run([*rlmake_exe(), *argv], cwd=project, capture_output=True,
                          text=True, timeout=timeout, env=env)
    result = BuildResult(argv, done.returncode, done.stdout, done.stderr, 0.0)
    if expect is not None:
        assert result.returncode == expect, result.describe()
    return result


def small_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "src.txt").write_text("staged source\n")
    (root / "Rulesfile.yaml").write_text(
        "default: all\nrules:\n"
        "  mid.txt:\n    deps: [src.txt]\n    command: tr a-z A-Z < src.txt > mid.txt\n"
        "  out.txt:\n    deps: [mid.txt]\n    command: cat mid.txt mid.txt > out.txt\n"
        "  all:\n    deps: [out.txt]\n")
    return root


def assert_one_clear_refusal(result: BuildResult, *words: str) -> None:
    text = result.stdout + result.stderr
    for word in words:
        assert word in text, result.describe()
    assert "Traceback" not in text, result.describe()
    assert "FAILED" not in text, result.describe()      # no job was even tried
    assert text.count("rlmake: error") <= 1 and text.count("Error") <= 1, result.describe()


def s3(prefix: str) -> list[str]:
    return ["--cache", f"s3://{BUCKET}/{prefix}", "--no-local-cache"]


# --- write access ---------------------------------------------------------------------------------

def test_staged_without_cache_write_stops_at_once(tmp_path, moto):
    """Before even connecting: the scheduler's port here is closed."""
    project = small_project(tmp_path / "proj")
    result = build(project, moto, "--executor", "dask", "--scheduler",
                   f"tcp://127.0.0.1:{closed_port()}", "--dask-files", "staged",
                   *s3("no-write"), expect=2)
    assert_one_clear_refusal(result, "--dask-files staged", NEEDS_WRITE, f"s3://{BUCKET}/no-write")
    assert "cannot reach" not in result.stderr, result.describe()
    assert not (project / "out.txt").exists()


def test_cache_write_from_the_environment_allows_staging(tmp_path, moto, no_credentials):
    """RLMAKE_CACHE_WRITE=1 counts as --cache-write (here the workers then lack
    credentials, which is the next check: it is reached)."""
    project = small_project(tmp_path / "proj")
    env = build_env(RLMAKE_CACHE_ENDPOINT=moto.endpoint, RLMAKE_CACHE_WRITE="1",
                    **CREDENTIALS, **NO_METADATA)
    done = subprocess.run([*rlmake_exe(), "build", "--executor", "dask", "--scheduler",
                           no_credentials.address, "--dask-files", "staged", *s3("env-write")],
                          cwd=project, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "--cache-write" not in done.stderr, done.stderr
    assert "cannot write to" in done.stderr, done.stderr


def test_auto_that_must_stage_needs_write_access(tmp_path, moto, apart):
    project = small_project(apart.hidden / "auto-no-write")
    result = build(project, moto, "--executor", "dask", "--scheduler", apart.cluster.address,
                   *s3("auto-no-write"), expect=2)
    assert_one_clear_refusal(result, f"the Dask workers cannot see {project}",
                             "files must be staged through the store", NEEDS_WRITE)
    assert not (project / "out.txt").exists()


def test_auto_that_can_share_needs_no_write_access(tmp_path, moto, no_credentials):
    """The workers see the project: shared mode, without --cache-write, and without
    credentials on the workers (they never touch the store)."""
    project = tmp_path / "proj"
    write_generated(project)
    result = build(project, moto, "--executor", "dask", "--scheduler",
                   no_credentials.address, *s3("auto-shared"))
    assert "files on a shared filesystem" in result.stderr, result.describe()
    assert len(tree(project, ("out", "cat"))) == 200


def test_auto_stages_over_s3_when_the_workers_cannot_see_the_project(tmp_path, moto, apart):
    project = apart.hidden / "auto-staged"
    write_generated(project)
    reference = tmp_path / "reference"
    write_generated(reference)
    subprocess.run([*rlmake_exe(), "build", "-j2", "--executor", "local"], cwd=reference,
                   env=build_env(), check=True, capture_output=True, timeout=120)
    result = build(project, moto, "--executor", "dask", "--scheduler", apart.cluster.address,
                   *s3("auto-staged"), "--cache-write", timeout=300)
    assert f"files staged through s3://{BUCKET}/auto-staged" in result.stderr, result.describe()
    assert tree(project, ("out", "cat")) == tree(reference, ("out", "cat"))


# --- workers without what staging needs -----------------------------------------------------------

def test_workers_without_credentials_stop_the_build_once(tmp_path, moto, no_credentials):
    project = tmp_path / "proj"
    write_generated(project)
    result = build(project, moto, "--executor", "dask", "--scheduler", no_credentials.address,
                   "--dask-files", "staged", *s3("no-credentials"), "--cache-write", expect=2)
    assert_one_clear_refusal(result, "the Dask worker w", f"cannot write to s3://{BUCKET}/",
                             "credentials", "staged mode needs rlmake installed on every worker")
    assert not (project / "out").exists()


def test_a_worker_that_cannot_write_the_store_directory_stops_the_build(tmp_path, moto, apart):
    project = small_project(tmp_path / "proj")
    store = apart.read_only / "store"
    result = build(project, moto, "--executor", "dask", "--scheduler", apart.cluster.address,
                   "--dask-files", "staged", "--cache", store, "--cache-write",
                   "--no-local-cache", expect=2)
    assert_one_clear_refusal(result, "the Dask worker w", f"cannot write to {store}",
                             "Read-only file system")
    assert not (project / "out.txt").exists()


def test_a_store_directory_the_workers_do_not_share_stops_the_build(tmp_path, moto, apart):
    """The workers can write a directory at that path, but it is not this machine's."""
    project = small_project(tmp_path / "proj")
    store = apart.hidden / "store-here-only"
    result = build(project, moto, "--executor", "dask", "--scheduler", apart.cluster.address,
                   "--dask-files", "staged", "--cache", store, "--cache-write",
                   "--no-local-cache", expect=2)
    assert_one_clear_refusal(result, "the Dask worker w", f"does not find in {store} what "
                             "this machine wrote there", "the same store")


@pytest.mark.parametrize("mode", ["staged", "auto"])
def test_a_worker_without_rlmake_stops_the_build_once(tmp_path, moto, one_without_rlmake,
                                                      mode):
    project = small_project(tmp_path / "proj")
    result = build(project, moto, "--executor", "dask", "--scheduler",
                   one_without_rlmake.address, "--dask-files", mode, *s3(f"no-rlmake-{mode}"),
                   "--cache-write", expect=2)
    assert_one_clear_refusal(result, "the Dask worker w1", "cannot import rlmake",
                             "No module named 'rlmake'", "install rlmake")
    assert not (project / "out.txt").exists()
