"""The artifact cache end to end: a local store, a shared S3 store (moto's real server
on 127.0.0.1) and a shared directory store, with real gcc builds of examples/compile.

Every build runs the installed `rlmake` console script with CI=1. `gcc` is a wrapper on
PATH that logs each call and then runs the real compiler, so a test knows exactly what
was compiled; the progress lines and the JOB STATUS table are checked as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from checkout import RLMAKE

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from s3server import CREDENTIALS, MotoServer, free_port, list_keys  # noqa: E402
import storekit  # noqa: E402
from rlmake.hashing import digest_file  # noqa: E402

pytestmark = pytest.mark.integration     # every test here starts real processes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compile"
SOURCES = ("Rulesfile.yaml", "lib.c", "prog.c", "prog2.c")
OUTPUTS = ("prog.o", "prog2.o", "lib.o", "prog", "prog2")
LIB_B = '#include <stdio.h>\n\nvoid print_message(const char *name) {\n' \
        '    printf("Version B says goodbye, %s!\\n", name);\n}\n'
_PROGRESS = re.compile(r"^\[\d+/\d+\] (.*?)(?: \(restored from (.+)\))?$")


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture
def moto(moto_server) -> MotoServer:
    """The shared S3 server; every test here makes a bucket of its own."""
    return moto_server


@dataclass
class Bucket:
    server: MotoServer
    name: str
    client: object

    def url(self, prefix: str = "ci") -> str:
        return f"s3://{self.name}/{prefix}"

    def keys(self, prefix: str = "ci") -> list[str]:
        return list_keys(self.client, self.name, prefix + "/")

    def records(self, prefix: str = "ci") -> list[dict]:
        return [json.loads(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())
                for key in self.keys(prefix) if "/ac/" in key]


def _new_bucket(server: MotoServer) -> Bucket:
    client = server.client()
    name = f"rlmake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(server, name, client)


@pytest.fixture
def bucket(moto) -> Bucket:
    return _new_bucket(moto)


@pytest.fixture
def gcc_bin(tmp_path) -> Path:
    """A directory with a `gcc` that appends its arguments to $GCC_LOG and runs real gcc."""
    real = shutil.which("gcc")
    if real is None:
        pytest.skip("gcc is needed")
    directory = tmp_path / "bin"
    directory.mkdir()
    wrapper = directory / "gcc"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "$GCC_LOG"\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory


# --- running rlmake -------------------------------------------------------------------

@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    gcc: list[str]                      # the gcc calls this run made

    def describe(self) -> str:
        return (f"$ rlmake {' '.join(self.argv)}\nexit {self.returncode}\n--- gcc calls\n"
                + "\n".join(self.gcc) + f"\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")

    def progress(self) -> dict[str, str | None]:
        """{command label: the store it was restored from, or None} of the progress lines."""
        found = {}
        for line in self.stdout.splitlines():
            match = _PROGRESS.match(line)
            if match:
                found[match.group(1)] = match.group(2)
        return found

    def table_all(self) -> dict[str, int]:
        lines = self.stdout.splitlines()
        header = next(line for line in lines if line.startswith("RULE "))
        row = next(line for line in lines if line.startswith("ALL "))
        return dict(zip(header.split()[1:], map(int, row.split()[1:])))

    @property
    def noop(self) -> bool:
        return "nothing to do, everything is up to date" in self.stdout


class Rlmake:
    """Runs the real console script with a clean environment (no stray RLMAKE_/AWS_ settings)."""

    def __init__(self, tmp_path: Path, gcc_bin: Path | None, endpoint: str | None):
        self.exe = list(RLMAKE)
        self.log = tmp_path / "gcc.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RLMAKE_", "AWS_"))}
        env.update(CREDENTIALS, CI="1", GCC_LOG=str(self.log),
                   AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
                   AWS_EC2_METADATA_DISABLED="true")
        if gcc_bin is not None:
            env["PATH"] = f"{gcc_bin}{os.pathsep}{env.get('PATH', '')}"
        if endpoint is not None:
            env["RLMAKE_CACHE_ENDPOINT"] = endpoint
        self.env = env

    def __call__(self, project: Path, *args: str, expect: int | None = 0,
                 env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        self.log.unlink(missing_ok=True)
        argv = [*map(str, args)]
        done = subprocess.run([*self.exe, "-C", str(project), *argv], capture_output=True,
                              text=True, timeout=timeout, env={**self.env, **(env or {})})
        calls = self.log.read_text().splitlines() if self.log.exists() else []
        result = Result(argv, done.returncode, done.stdout, done.stderr, calls)
        if expect is not None:
            assert result.returncode == expect, result.describe()
        return result

    def start(self, project: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*self.exe, "-C", str(project), *map(str, args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, start_new_session=True)


@pytest.fixture
def rlmake(tmp_path, gcc_bin, moto) -> Rlmake:
    return Rlmake(tmp_path, gcc_bin, moto.endpoint)


def clone(destination: Path) -> Path:
    """A fresh checkout of examples/compile: sources only, no .rlmake or outputs."""
    destination.mkdir(parents=True)
    for name in SOURCES:
        shutil.copyfile(EXAMPLE / name, destination / name)
    return destination


def run_program(project: Path, name: str) -> str:
    return subprocess.run([str(project / name)], capture_output=True, text=True, check=True,
                          timeout=10).stdout


def assert_all_restored(result: Result, source: str) -> None:
    progress = result.progress()
    assert len(progress) == 5, result.describe()
    assert all(store == source for store in progress.values()), result.describe()
    assert result.gcc == [], result.describe()
    table = result.table_all()
    assert (table["RESTORED"], table["DONE"], table["TOTAL"]) == (5, 0, 5), result.describe()


def assert_all_ran(result: Result) -> None:
    assert len(result.gcc) == 5, result.describe()
    assert all(store is None for store in result.progress().values()), result.describe()
    assert result.table_all()["DONE"] == 5, result.describe()


UNCHECKED = "RLMAKE_CACHE_KEY is not set, so its records are not checked"


def warnings(result: Result) -> list[str]:
    """Warnings, less the one a keyless build gives for each shared store it reads (at most
    once a build: tests/test_cache_trust_model.py tests it)."""
    said = [line for line in result.stderr.splitlines() if line.startswith("rlmake: warning:")]
    assert len([line for line in said if UNCHECKED in line]) <= 1, result.describe()
    return [line for line in said if UNCHECKED not in line]


# --- two clones, one bucket -----------------------------------------------------------

def test_second_clone_restores_everything_from_the_bucket(tmp_path, rlmake, bucket):
    a, b = clone(tmp_path / "a"), clone(tmp_path / "b")
    url = bucket.url()
    first = rlmake(a, "build", "--cache", url, "--cache-write")
    assert_all_ran(first)
    assert warnings(first) == [], first.describe()
    assert len([k for k in bucket.keys() if "/ac/" in k]) == 5

    second = rlmake(b, "build", "--cache", url, "--no-local-cache")
    assert_all_restored(second, url)
    assert warnings(second) == [], second.describe()
    for name in OUTPUTS:
        assert (b / name).read_bytes() == (a / name).read_bytes(), name
    assert os.access(b / "prog", os.X_OK) and os.access(b / "prog2", os.X_OK)
    assert run_program(b, "prog") == "Hello, prog!\n"
    assert run_program(b, "prog2") == "Hello, prog2!\n"
    assert not (b / ".rlmake" / "cache").exists(), "--no-local-cache wrote a local store"

    why = rlmake(b, "why", "prog")
    assert f"restored from {url}" in why.stdout, why.describe()

    again = rlmake(b, "build", "--cache", url, "--no-local-cache")
    assert again.noop and again.gcc == [] and again.progress() == {}, again.describe()


def test_read_only_build_stores_nothing(tmp_path, rlmake, bucket):
    a, b = clone(tmp_path / "a"), clone(tmp_path / "b")
    url = bucket.url()
    rlmake(a, "build", "--cache", url, "--cache-write")
    before = sorted(bucket.keys())

    (b / "lib.c").write_text(LIB_B)                     # prog.o, prog2.o hit; the rest runs
    changed = rlmake(b, "build", "--cache", url)
    assert sorted(changed.gcc) == sorted(["-c lib.c", "-o prog prog.o lib.o",
                                          "-o prog2 prog2.o lib.o"]), changed.describe()
    assert changed.progress()["gcc -c prog.c"] == url, changed.describe()
    assert run_program(b, "prog") == "Version B says goodbye, prog!\n"
    assert sorted(bucket.keys()) == before, "a read-only build wrote to the shared cache"

    # Not vacuous: the same change built with --cache-write does store it.
    (b / "lib.c").write_text(LIB_B.replace("Version B", "Version C"))
    rlmake(b, "build", "--cache", url, "--cache-write")
    assert len(bucket.keys()) > len(before)


def test_settings_from_environment_and_rlmake_toml(tmp_path, rlmake, bucket):
    """RLMAKE_CACHE_WRITE=1 writes; rlmake.toml's [cache] url and endpoint_url are enough
    to read (no flag, no RLMAKE_CACHE_ENDPOINT)."""
    a, b = clone(tmp_path / "a"), clone(tmp_path / "b")
    url = bucket.url("from-settings")
    assert_all_ran(rlmake(a, "build", env={"RLMAKE_CACHE": url, "RLMAKE_CACHE_WRITE": "1"}))
    assert len([k for k in bucket.keys("from-settings") if "/ac/" in k]) == 5

    (b / "rlmake.toml").write_text(f'[cache]\nurl = "{url}"\n'
                                   f'endpoint_url = "{bucket.server.endpoint}"\n')
    result = rlmake(b, "build", env={"RLMAKE_CACHE_ENDPOINT": ""})
    assert_all_restored(result, url)


# --- faults ---------------------------------------------------------------------------

def test_store_with_nothing_listening_warns_once_and_builds_locally(tmp_path, gcc_bin):
    run = Rlmake(tmp_path, gcc_bin, f"http://127.0.0.1:{free_port()}")
    project = clone(tmp_path / "p")
    started = time.monotonic()
    result = run(project, "build", "-j", "2", "--cache", "s3://nobody-home/ci", "--cache-write")
    elapsed = time.monotonic() - started
    assert_all_ran(result)
    said = warnings(result)
    assert len(said) == 1 and "not usable" in said[0], result.describe()
    assert "s3://nobody-home/ci" in said[0]
    assert run_program(project, "prog") == "Hello, prog!\n"
    assert elapsed < 20, f"an unreachable store took {elapsed:.1f}s"


READ_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                   "Resource": ["arn:aws:s3:::*"]}]}


def _set_moto_auth(server: MotoServer, after_requests: str) -> None:
    """moto's switch for enforcing IAM: "0" from now on, "inf" never (its default)."""
    request = urllib.request.Request(server.endpoint + "/moto-api/reset-auth",
                                     data=after_requests.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_write_refused_by_the_store_warns_once_and_builds(tmp_path, rlmake, bucket):
    """--cache-write with credentials that may read but not write (a developer's)."""
    iam = _iam_client(bucket.server)
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read-only",
                        PolicyDocument=json.dumps(READ_ONLY_POLICY))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    project = clone(tmp_path / "p")
    _set_moto_auth(bucket.server, "0")
    try:
        result = rlmake(project, "build", "--cache", bucket.url(), "--cache-write", expect=None,
                        env={"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                             "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        _set_moto_auth(bucket.server, "inf")
    assert len(result.gcc) == 5, result.describe()
    assert bucket.keys() == [], "the read-only credentials wrote after all"
    assert result.returncode == 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    said = warnings(result)
    assert len(said) == 1 and "not usable" in said[0], result.describe()
    assert result.table_all()["DONE"] == 5, result.describe()
    assert rlmake(project, "build").noop


def _iam_client(server: MotoServer):
    import boto3

    return boto3.session.Session().client(
        "iam", endpoint_url=server.endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


SLOW_CHAIN = """\
rules:
  all:
    deps: [o4]
  o1:
    command: sleep 0.2; echo one > o1
  o2:
    deps: [o1]
    command: >-
      touch o2.started;
      for i in $(seq 400); do [ -e server-stopped ] && break; sleep 0.05; done;
      cat o1 > o2; echo two >> o2
  o3:
    deps: [o2]
    command: sleep 0.2; cat o2 > o3; echo three >> o3
  o4:
    deps: [o3]
    command: sleep 0.2; cat o3 > o4; echo four >> o4
"""


def test_server_stopped_mid_build_warns_once_and_builds_locally(tmp_path):
    server = MotoServer().start()
    try:
        shared = _new_bucket(server)
        run = Rlmake(tmp_path, None, server.endpoint)
        project = tmp_path / "p"
        project.mkdir()
        (project / "Rulesfile.yaml").write_text(SLOW_CHAIN)
        build = run.start(project, "build", "-j", "1", "--cache", shared.url(), "--cache-write")
        try:
            deadline = time.monotonic() + 30
            while not (project / "o2.started").exists():
                assert build.poll() is None, build.communicate()
                assert time.monotonic() < deadline, "o2 never started"
                time.sleep(0.02)
            assert (project / "o1").exists()
            server.stop()                               # after the first job, mid-build
            (project / "server-stopped").touch()
            stdout, stderr = build.communicate(timeout=60)
        finally:
            if build.poll() is None:
                os.killpg(build.pid, 9)
                build.wait()
    finally:
        server.stop()
    result = Result([], build.returncode, stdout, stderr, [])
    assert build.returncode == 0, result.describe()
    said = warnings(result)
    assert len(said) == 1 and "not usable" in said[0], result.describe()
    assert (project / "o4").read_text() == "one\ntwo\nthree\nfour\n"
    assert result.table_all()["DONE"] == 4, result.describe()


def test_corrupted_blob_is_refused_and_the_job_runs(tmp_path, rlmake, bucket):
    a, b = clone(tmp_path / "a"), clone(tmp_path / "b")
    url = bucket.url()
    rlmake(a, "build", "--cache", url, "--cache-write")
    digest = digest_file(str(a / "lib.o"))
    blobs = [key for key in bucket.keys() if "/cas/" in key and key.endswith(digest)]
    assert len(blobs) == 1, bucket.keys()
    bucket.client.put_object(Bucket=bucket.name, Key=blobs[0], Body=b"not an object file\n")

    result = rlmake(b, "build", "--cache", url, "--no-local-cache")
    said = warnings(result)
    assert len(said) == 1 and "refused" in said[0] and "lib.o" in said[0], result.describe()
    assert result.gcc == ["-c lib.c"], result.describe()
    progress = result.progress()
    assert progress["gcc -c lib.c"] is None, result.describe()
    assert progress["gcc -c prog.c"] == url, result.describe()
    assert (b / "lib.o").read_bytes() == (a / "lib.o").read_bytes()
    assert run_program(b, "prog") == "Hello, prog!\n"
    assert run_program(b, "prog2") == "Hello, prog2!\n"
    assert not list(b.glob(".rlmake-restore-*")), "a refused restore left its staging file"


def test_writer_replaces_a_corrupted_blob(tmp_path, rlmake, bucket):
    a, c = clone(tmp_path / "a"), clone(tmp_path / "c")
    url = bucket.url()
    rlmake(a, "build", "--cache", url, "--cache-write")
    digest = digest_file(str(a / "lib.o"))
    [blob] = [key for key in bucket.keys() if "/cas/" in key and key.endswith(digest)]
    bucket.client.put_object(Bucket=bucket.name, Key=blob, Body=b"not an object file\n")

    writer = rlmake(c, "build", "--cache", url, "--cache-write", "--no-local-cache")
    assert writer.gcc == ["-c lib.c"] and "refused" in writer.stderr, writer.describe()
    stored = bucket.client.get_object(Bucket=bucket.name, Key=blob)["Body"].read()
    assert stored == (a / "lib.o").read_bytes(), "the corrupted blob is still in the bucket"


def test_records_signed_with_another_key_are_refused(tmp_path, rlmake, bucket):
    a, b, c = clone(tmp_path / "a"), clone(tmp_path / "b"), clone(tmp_path / "c")
    url = bucket.url()
    rlmake(a, "build", "--cache", url, "--cache-write", env={"RLMAKE_CACHE_KEY": "k1"})
    assert all(record.get("signature") for record in bucket.records())

    wrong = rlmake(b, "build", "--cache", url, "--no-local-cache", env={"RLMAKE_CACHE_KEY": "k2"})
    assert_all_ran(wrong)
    said = warnings(wrong)
    assert said and all("refused" in line and "signature" in line for line in said), \
        wrong.describe()
    assert run_program(b, "prog") == "Hello, prog!\n"

    right = rlmake(c, "build", "--cache", url, "--no-local-cache", env={"RLMAKE_CACHE_KEY": "k1"})
    assert_all_restored(right, url)
    assert warnings(right) == [], right.describe()
    assert run_program(c, "prog2") == "Hello, prog2!\n"


# --- the local store ------------------------------------------------------------------

def _stat_number(text: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}:\s+(\d+)", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def test_local_store_restores_after_a_branch_switch_until_gc(tmp_path, rlmake):
    project = clone(tmp_path / "p")
    lib_a = (project / "lib.c").read_text()
    rlmake(project, "build")

    (project / "lib.c").write_text(LIB_B)
    to_b = rlmake(project, "build")
    assert len(to_b.gcc) == 3, to_b.describe()

    (project / "lib.c").write_text(lib_a)               # back to version A
    back = rlmake(project, "build")
    assert back.gcc == [], back.describe()
    assert back.progress() == {"gcc -c lib.c": "local cache",
                               "gcc -o prog prog.o lib.o": "local cache",
                               "gcc -o prog2 prog2.o lib.o": "local cache"}, back.describe()
    table = back.table_all()
    assert (table["RESTORED"], table["CACHED"], table["DONE"]) == (3, 2, 0), back.describe()
    assert run_program(project, "prog") == "Hello, prog!\n"
    why = rlmake(project, "why", "lib.o")
    assert "restored from local cache" in why.stdout, why.describe()

    stats = rlmake(project, "cache", "stats")
    assert _stat_number(stats.stdout, "restored (hits)") >= 3, stats.describe()
    assert _stat_number(stats.stdout, "local store") > 0, stats.describe()

    gc = rlmake(project, "cache", "gc", "--max-size", "0")
    removed = re.search(r"removed (\d+) entries", gc.stdout)
    assert removed and int(removed.group(1)) > 0, gc.describe()
    after = rlmake(project, "cache", "stats")
    assert _stat_number(after.stdout, "local store") == 0, after.describe()

    (project / "lib.c").write_text(LIB_B)               # version B again: gone from the store
    rebuilt = rlmake(project, "build")
    assert sorted(rebuilt.gcc) == sorted(["-c lib.c", "-o prog prog.o lib.o",
                                          "-o prog2 prog2.o lib.o"]), rebuilt.describe()
    assert all(store is None for store in rebuilt.progress().values()), rebuilt.describe()
    assert run_program(project, "prog") == "Version B says goodbye, prog!\n"


# --- a shared directory store ---------------------------------------------------------

def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_shared_directory_store(tmp_path, rlmake):
    a, b = clone(tmp_path / "a"), clone(tmp_path / "b")
    shared = tmp_path / "shared-cache"
    assert_all_ran(rlmake(a, "build", "--cache", str(shared), "--cache-write"))
    stored = _tree(shared)
    assert len([p for p in stored if p.startswith("ac/")]) == 5, stored

    result = rlmake(b, "build", "--cache", str(shared))
    assert_all_restored(result, str(shared))
    assert warnings(result) == [], result.describe()
    for name in OUTPUTS:
        assert (b / name).read_bytes() == (a / name).read_bytes(), name
    assert run_program(b, "prog2") == "Hello, prog2!\n"
    assert _tree(shared) == stored, "a read-only build wrote to the shared directory"
    assert _outputs_of(_local_records(b / ".rlmake" / "cache")) == sorted(OUTPUTS), \
        "a hit in the shared store was not copied into the local store"
    assert rlmake(b, "build", "--cache", str(shared)).noop


# --- a failed job is never stored -----------------------------------------------------

FAILING = """\
rules:
  all:
    deps: [ok.txt, out.txt]
  ok.txt:
    command: echo ok > ok.txt
  out.txt:
    command: echo partial > out.txt; exit 1
"""


def _local_records(root: Path) -> list[dict]:
    return list(storekit.records(root).values()) if root.exists() else []


def _outputs_of(records: list[dict]) -> list[str]:
    return sorted(output["path"] for record in records for output in record["outputs"])


@pytest.mark.parametrize("kind", ["s3", "directory"])
def test_failed_job_is_never_stored(tmp_path, rlmake, bucket, kind):
    project = tmp_path / "p"
    project.mkdir()
    (project / "Rulesfile.yaml").write_text(FAILING)
    shared = tmp_path / "shared-cache"
    url = bucket.url() if kind == "s3" else str(shared)
    result = rlmake(project, "build", "-k", "--cache", url, "--cache-write", expect=1)
    assert "FAILED: out.txt" in result.stderr, result.describe()
    records = bucket.records() if kind == "s3" else _local_records(shared)
    assert _outputs_of(records) == ["ok.txt"], records       # the good job is stored, not the bad
    assert _outputs_of(_local_records(project / ".rlmake" / "cache")) == ["ok.txt"]
