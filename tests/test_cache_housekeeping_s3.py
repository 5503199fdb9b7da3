"""`rlmake cache stats` and `rlmake cache gc` on a real S3 service (moto's server on
127.0.0.1): a bucket filled by real builds with --cache-write, its figures, removal by
age and by size, and builds afterwards that restore what remains and run the rest."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from buildkit import BuildResult, build_env, run_in_process  # noqa: E402
from s3server import CREDENTIALS, MotoServer, list_keys  # noqa: E402
from test_cache_housekeeping import OUTPUTS, RULES, SOURCES, figure  # noqa: E402
from conftest import Run, write_project  # noqa: E402

from rlmake.cache.housekeeping import Limits, is_entry_name  # noqa: E402
from rlmake.project import Project  # noqa: E402

pytestmark = pytest.mark.integration        # a real S3 server, and builds that run commands

DAY = 86400.0


@pytest.fixture
def moto(moto_server) -> MotoServer:
    """The shared S3 server; every test here makes a bucket of its own."""
    return moto_server


@pytest.fixture
def s3_env(tmp_path, moto, monkeypatch) -> dict[str, str]:
    """The environment of every rlmake run here (also set in this process, for the calls
    to Project): moto's endpoint and dummy credentials, nothing from ~/.aws."""
    env = {**CREDENTIALS, "RLMAKE_CACHE_ENDPOINT": moto.endpoint,
           "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket(moto):
    client = moto.client()
    name = f"rlmake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def rlmake(root: Path, env: dict[str, str], *args: str, expect: int = 0) -> BuildResult:
    code, stdout, stderr = run_in_process(["-C", str(root), *args], root, build_env(**env))
    result = BuildResult(list(args), code, stdout, stderr, 0.0)
    assert code == expect, result.describe()
    return result


def as_run(result: BuildResult) -> Run:
    return Run(result.returncode, result.stdout, result.stderr)


def usable_outputs(client, bucket: str, prefix: str) -> set[str]:
    """The outputs whose record and every blob it names are in the bucket."""
    keys = set(list_keys(client, bucket, prefix + "/"))
    usable = set()
    for key in keys:
        if key.startswith(prefix + "/ac/") and is_entry_name(key.rsplit("/", 1)[1]):
            record = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            if all(f"{prefix}/cas/{output['digest']}" in keys for output in record["outputs"]):
                usable.update(output["path"] for output in record["outputs"])
    return usable


_PROGRESS = re.compile(r"^\[\d+/\d+\] cp \S+ (\S+)( \(restored from .+\))?$")


def ran_and_restored(result: BuildResult) -> tuple[set[str], set[str]]:
    """The outputs whose commands ran, and those restored, from the progress lines."""
    ran, restored = set(), set()
    for line in result.lines:
        match = _PROGRESS.match(line)
        if match:
            (restored if match[2] else ran).add(match[1])
    return ran, restored


def fresh_build(tmp_path: Path, name: str, env: dict[str, str], url: str) -> BuildResult:
    """A build of a new clone, reading the bucket only; its outputs must be right."""
    clone = write_project(tmp_path / name, RULES, SOURCES)
    result = rlmake(clone, env, "build", "-v", "--cache", url, "--no-local-cache")
    for output, text in OUTPUTS.items():
        assert (clone / output).read_text() == text, output
    return result


def test_stats_and_gc_of_an_s3_store(tmp_path, s3_env, bucket):
    client, name = bucket
    url = f"s3://{name}/ci"
    root = write_project(tmp_path / "p", RULES, SOURCES)
    filled = rlmake(root, s3_env, "build", "-v", "--cache", url, "--cache-write")
    assert ran_and_restored(filled) == (set(OUTPUTS), set()), filled.describe()
    digest = "ab" * 20
    strays = ["ci/README.txt", "ci/ac/notes.txt", f"ci/cas/{digest}/x", f"ci2/ac/{digest}",
              f"other/cas/{digest}"]
    for key in strays:
        client.put_object(Bucket=name, Key=key, Body=b"not rlmake's")

    stats = as_run(rlmake(root, s3_env, "cache", "stats", "--cache", url))
    assert figure(stats, "shared store").startswith("6 entries, ")
    assert figure(stats, "shared store").endswith(f" in {url}")
    shared = stats.lines[stats.lines.index(next(line for line in stats.lines
                                                if line.startswith("shared store:"))):]
    assert [line.split(":")[0].strip() for line in shared[1:]] == [
        "records", "blobs", "oldest stored", "newest stored", "(S3 keeps no time of use"]
    assert shared[1].split()[1] == "3," and shared[2].split()[1] == "3,"

    refused = rlmake(root, s3_env, "cache", "gc", "--cache", url, "--max-age", "0s", expect=2)
    assert f"removes entries from the shared store '{url}'" in refused.stderr
    assert "--cache-write" in refused.stderr

    young = rlmake(root, s3_env, "cache", "gc", "--cache", url, "--cache-write",
                   "--max-age", "1d")
    assert young.stdout.startswith(f"shared store {url}: removed 0 entries"), young.describe()

    settings = Project(str(root)).build_config(cache_url=url, cache_write=True).cache
    later = Project(str(root)).collect_shared_garbage(settings, Limits(max_age=DAY),
                                                      dry_run=True, now=time.time() + 2 * DAY)
    assert (later.removed.count, later.kept.total_count) == ({"ac": 3, "cas": 3}, 0)
    assert len(list_keys(client, name, "ci/")) == 6 + 3, "a dry run removed something"

    total = sum(client.head_object(Bucket=name, Key=key)["ContentLength"]
                for key in list_keys(client, name, "ci/") if key.split("/")[1] in ("ac", "cas")
                and key not in strays)
    by_size = rlmake(root, s3_env, "cache", "gc", "--cache", url, "--cache-write",
                     "--max-size", str(total // 2))
    assert by_size.stdout.startswith(f"shared store {url}: removed "), by_size.describe()
    usable = usable_outputs(client, name, "ci")
    assert usable < set(OUTPUTS)
    after_size = fresh_build(tmp_path, "after-size", s3_env, url)
    assert ran_and_restored(after_size) == (set(OUTPUTS) - usable, usable), \
        after_size.describe()

    everything = rlmake(root, s3_env, "cache", "gc", "--cache", url, "--cache-write",
                        "--max-age", "0s")
    assert "; kept 0 entries, 0 B" in everything.stdout, everything.describe()
    assert sorted(list_keys(client, name)) == sorted(strays)
    after_all = fresh_build(tmp_path, "after-all", s3_env, url)
    assert ran_and_restored(after_all) == (set(OUTPUTS), set()), after_all.describe()


def test_gc_of_an_s3_store_named_by_the_environment_only_touches_its_prefix(tmp_path, s3_env,
                                                                           bucket):
    client, name = bucket
    root = write_project(tmp_path / "p", RULES, SOURCES)
    for prefix in ("team-a", "team-a-old"):
        rlmake(root, s3_env, "build", "-B", "--cache", f"s3://{name}/{prefix}", "--cache-write")
    env = {**s3_env, "RLMAKE_CACHE": f"s3://{name}/team-a", "RLMAKE_CACHE_WRITE": "1"}
    result = rlmake(root, env, "cache", "gc", "--max-size", "0")
    assert result.stdout.startswith(f"shared store s3://{name}/team-a: removed 6 entries "
                                    "(3 records, 3 blobs)"), result.describe()
    assert list_keys(client, name, "team-a/") == []
    assert len(list_keys(client, name, "team-a-old/")) == 6
    assert os.listdir(root / ".rlmake" / "cache"), "gc of the shared store emptied the local one"
