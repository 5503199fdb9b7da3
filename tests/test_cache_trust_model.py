"""Who a shared store trusts: the marker a keyed writer leaves, what a build without
RLMAKE_CACHE_KEY does with a marked or unmarked store, one line per store for records
refused, and cache URLs that only look like URLs.

Builds run in-process (the real Project, scheduler and cache; fakes.FakeExecutor runs the
commands), against a directory store and against a real S3 service (moto's server on
127.0.0.1, so those cases carry the integration marker). A few tests run the CLI itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from engine import Recording
from fakes import FakeClock, FakeExecutor

from checkout import RLMAKE
from rlmake.cache.artifacts import ArtifactCache, StoreUse
from rlmake.cache.base import MARKER_NAME
from rlmake.cache.local import LocalStore
from rlmake.cache.trust import MARKER_LIMIT, SIGNED_MARKER
from rlmake.errors import BuildFailed, Interrupted, UsageError
from rlmake.hashing import digest_file
from rlmake.model import BuildOptions
from rlmake.project import Project
from rlmake.reporters.console import ConsoleReporter

JOBS = 8
KEY, OTHER_KEY = "k1", "k2"
NOT_SET_HERE = "RLMAKE_CACHE_KEY is not set here: not restoring from it"
UNCHECKED = "RLMAKE_CACHE_KEY is not set, so its records are not checked"
REFUSED = "cache entry refused"


def rules(jobs: int) -> str:
    lines = ["rules:", f"  all: {{deps: [{', '.join(f'o{i}' for i in range(jobs))}]}}"]
    lines += [f"  o{i}: {{command: echo job-{i} > o{i}}}" for i in range(jobs)]
    return "\n".join(lines) + "\n"


# --- stores ---------------------------------------------------------------------------

class DirectoryStore:
    kind = "directory"

    def __init__(self, root: Path):
        self.root = root
        self.url = str(root)

    def env(self) -> dict[str, str]:
        return {}

    def records(self) -> dict[str, tuple[str, dict]]:
        """{output path: (where, record)} of every action record."""
        found = {}
        for path in (self.root / "ac").rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                record = json.loads(path.read_bytes())
                found[record["outputs"][0]["path"]] = (str(path), record)
        return found

    def rewrite(self, where: str, record: dict) -> None:
        Path(where).write_text(json.dumps(record))

    def put_blob(self, digest: str, data: bytes) -> None:
        (self.root / "cas" / digest[:2] / digest).write_bytes(data)

    def marker(self) -> bytes | None:
        path = self.root / MARKER_NAME
        return path.read_bytes() if path.exists() else None

    def set_marker(self, data: bytes | None) -> None:
        path = self.root / MARKER_NAME
        path.unlink(missing_ok=True)
        if data is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


class S3Store:
    kind = "s3"

    def __init__(self, server, client, prefix: str = "ci"):
        from s3server import CREDENTIALS

        self.server = server
        self.client = client
        self.bucket = f"rlmake-{os.urandom(6).hex()}"
        self.client.create_bucket(Bucket=self.bucket)
        self.prefix = prefix
        self.url = f"s3://{self.bucket}/{prefix}"
        self.credentials = CREDENTIALS

    def env(self) -> dict[str, str]:
        return {**self.credentials, "RLMAKE_CACHE_ENDPOINT": self.server.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def _get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self) -> list[str]:
        from s3server import list_keys

        return list_keys(self.client, self.bucket, self.prefix + "/")

    def records(self) -> dict[str, tuple[str, dict]]:
        found = {}
        for key in self.keys():
            if "/ac/" in key:
                record = json.loads(self._get(key))
                found[record["outputs"][0]["path"]] = (key, record)
        return found

    def rewrite(self, where: str, record: dict) -> None:
        self.client.put_object(Bucket=self.bucket, Key=where, Body=json.dumps(record).encode())

    def put_blob(self, digest: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/cas/{digest}", Body=data)

    def marker(self) -> bytes | None:
        key = f"{self.prefix}/{MARKER_NAME}"
        return self._get(key) if key in self.keys() else None

    def set_marker(self, data: bytes | None) -> None:
        key = f"{self.prefix}/{MARKER_NAME}"
        if data is None:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        else:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)


@pytest.fixture(scope="module")
def moto(moto_server):
    """The shared S3 server (each S3Store makes a bucket of its own), and a client."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    return moto_server, moto_server.client()    # a client costs a second to make: one is enough


BOTH = [pytest.param("directory"), pytest.param("s3", marks=pytest.mark.integration)]


@pytest.fixture(params=BOTH)
def store(request, tmp_path):
    """A directory store, and a bucket of the S3 server (for the cases that differ there:
    one GET, threads, objects instead of files)."""
    if request.param == "s3":
        return S3Store(*request.getfixturevalue("moto"))
    return DirectoryStore(tmp_path / "shared")


@pytest.fixture
def directory(tmp_path):
    return DirectoryStore(tmp_path / "shared")


@pytest.fixture
def s3(moto):
    return S3Store(*moto)


# --- building in-process ---------------------------------------------------------------

class Result:
    def __init__(self, ran: list[str], warnings: list[str], status: str):
        self.ran = ran
        self.warnings = warnings
        self.status = status

    def __repr__(self) -> str:
        return f"ran {self.ran}, status {self.status}, warnings:\n" + "\n".join(self.warnings)


class Builds:
    """Clones of one project, each built in-process with the settings of a CI job."""

    def __init__(self, tmp_path: Path, monkeypatch, jobs: int = JOBS):
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.jobs = jobs
        self.clock = FakeClock()
        for name in list(os.environ):
            if name.startswith(("RLMAKE_", "AWS_")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))

    def clone(self, name: str, text: str | None = None) -> Path:
        root = self.tmp_path / name
        root.mkdir()
        (root / "Rulesfile.yaml").write_text(text or rules(self.jobs))
        return root

    def build(self, root: Path, store, *, key: str | None = None, write: bool = False,
              local: bool = False, executor: FakeExecutor | None = None) -> Result:
        for name, value in store.env().items():
            self.monkeypatch.setenv(name, value)
        if key is None:
            self.monkeypatch.delenv("RLMAKE_CACHE_KEY", raising=False)
        else:
            self.monkeypatch.setenv("RLMAKE_CACHE_KEY", key)
        executor = executor or FakeExecutor(self.clock)
        project = Project(str(root))
        config = project.build_config(BuildOptions(jobs=4), cache_url=store.url,
                                      cache_write=write, local_cache=local)
        reporter = Recording()
        status = "ok"
        try:
            project.build([], config, reporter, executor=executor, clock=self.clock)
        except BuildFailed:
            status = "failed"
        except Interrupted:
            status = "interrupted"
        self.clock.advance(1)
        return Result(list(executor.ran), reporter.warnings, status)


@pytest.fixture
def builds(tmp_path, monkeypatch) -> Builds:
    return Builds(tmp_path, monkeypatch)


def all_outputs(jobs: int = JOBS) -> list[str]:
    return sorted(f"o{i}" for i in range(jobs))


def assert_contents_are_right(root: Path, jobs: int = JOBS) -> None:
    for i in range(jobs):
        assert (root / f"o{i}").read_text() == f"job-{i}\n", f"o{i}"


def repoint(store, victim: str, source: str) -> None:
    """The forgery of the issue: `victim`'s record now names `source`'s blob."""
    records = store.records()
    where, record = records[victim]
    record["outputs"][0]["digest"] = records[source][1]["outputs"][0]["digest"]
    store.rewrite(where, record)


# --- 1. the marker --------------------------------------------------------------------

def test_a_keyed_writer_marks_the_store(builds, store):
    first = builds.build(builds.clone("a"), store, key=KEY, write=True)
    assert sorted(first.ran) == all_outputs() and first.warnings == [], first
    assert store.marker() == SIGNED_MARKER == b'{"format": 1, "signed": true}\n'
    assert len(store.records()) == JOBS
    assert all(record.get("signature") for _, record in store.records().values())


def test_a_keyless_reader_refuses_a_signed_store_once(builds, store):
    builds.build(builds.clone("a"), store, key=KEY, write=True)
    repoint(store, "o1", "o2")           # anyone who can write the store, without the key
    b = builds.clone("b")
    result = builds.build(b, store)
    assert sorted(result.ran) == all_outputs(), result
    assert result.warnings == [f"cache {store.url}: its records are signed, and "
                               f"{NOT_SET_HERE}"], result
    assert_contents_are_right(b)                 # o1 holds job-1, not the forged job-2


def test_a_forged_record_is_restored_by_a_keyless_reader_without_a_marker_but_warned(
        builds, directory):
    # What the marker is for: without it, a keyless reader cannot tell (the documented
    # limit), and says so once per build.
    builds.build(builds.clone("a"), directory, write=True)
    assert directory.marker() is None
    repoint(directory, "o1", "o2")
    b = builds.clone("b")
    result = builds.build(b, directory)
    assert result.ran == [], result
    assert (b / "o1").read_text() == "job-2\n"
    [warning] = result.warnings
    assert warning.startswith(f"cache {directory.url}: {UNCHECKED}")
    assert "anyone who can write to this store" in warning


def test_a_keyed_reader_refuses_the_forged_record(builds, directory):
    builds.build(builds.clone("a"), directory, key=KEY, write=True)
    repoint(directory, "o1", "o2")
    b = builds.clone("b")
    result = builds.build(b, directory, key=KEY)
    assert result.ran == ["o1"], result
    assert_contents_are_right(b)
    assert len(result.warnings) == 1 and "signature" in result.warnings[0], result


def test_the_projects_own_store_gives_no_warning(builds, tmp_path):
    a = builds.clone("a")
    no_shared = DirectoryStore(tmp_path / "unused")
    no_shared.url = None
    assert sorted(builds.build(a, no_shared, local=True).ran) == all_outputs()
    for name in all_outputs():
        (a / name).unlink()
    (a / ".rlmake" / "state.db").unlink()
    again = builds.build(a, no_shared, local=True)
    assert again.ran == [] and again.warnings == [], again
    assert not (a / ".rlmake" / "cache" / MARKER_NAME).exists()


def test_a_keyless_writer_does_not_write_into_a_signed_store(builds, store):
    builds.build(builds.clone("a"), store, key=KEY, write=True)
    before = store.records()
    b = builds.clone("b", rules(JOBS + 3))       # three jobs the store has never seen
    result = builds.build(b, store, write=True)
    assert result.warnings == [f"cache {store.url}: its records are signed, and RLMAKE_CACHE_KEY "
                               "is not set here: not restoring from it or writing to it"], result
    assert store.records() == before, "a keyless writer wrote into a signed store"
    assert store.marker() == SIGNED_MARKER


def test_a_keyed_writer_marks_a_store_of_unsigned_records(builds, store):
    builds.build(builds.clone("a"), store, write=True)           # unsigned, unmarked
    b = builds.clone("b", rules(JOBS + 2))
    keyed = builds.build(b, store, key=KEY, write=True)
    # The old unsigned records are refused (one line, then a count), the new ones signed.
    assert sorted(keyed.ran) == all_outputs(JOBS + 2), keyed
    assert store.marker() == SIGNED_MARKER
    assert keyed.warnings[-1] == (f"cache {store.url}: {JOBS} records refused: wrong or missing "
                                  "signature (check RLMAKE_CACHE_KEY)"), keyed
    assert len(keyed.warnings) == 2, keyed
    keyless = builds.build(builds.clone("c"), store)
    assert len(keyless.ran) == JOBS and NOT_SET_HERE in keyless.warnings[0], keyless


def test_a_deleted_marker_is_written_again_by_the_next_keyed_writer(builds, directory):
    builds.build(builds.clone("a"), directory, key=KEY, write=True)
    directory.set_marker(None)                       # a hostile writer without the key
    keyless = builds.build(builds.clone("b"), directory)
    assert keyless.ran == [] and UNCHECKED in keyless.warnings[0], keyless
    builds.build(builds.clone("c"), directory, key=KEY, write=True)
    assert directory.marker() == SIGNED_MARKER


def test_a_keyed_reader_does_not_read_the_marker(builds, directory, monkeypatch):
    builds.build(builds.clone("a"), directory, key=KEY, write=True)
    reads = _count_marker_reads(monkeypatch)
    result = builds.build(builds.clone("b"), directory, key=KEY)
    assert result.ran == [] and result.warnings == [], result
    assert reads == []


def test_the_marker_is_read_once_per_build(builds, store, monkeypatch):
    builds.build(builds.clone("a"), store, key=KEY, write=True)
    reads = _count_marker_reads(monkeypatch)
    b = builds.clone("b", rules(JOBS + 5))
    result = builds.build(b, store, key=KEY, write=True)     # lookups, then writes
    assert sorted(result.ran) == sorted(f"o{i}" for i in range(JOBS, JOBS + 5)), result
    assert len(reads) == 1
    builds.build(builds.clone("c"), store)                   # keyless: lookups only
    assert len(reads) == 2


def _count_marker_reads(monkeypatch) -> list[str]:
    from rlmake.cache import s3 as s3_module

    reads: list[str] = []
    for cls in (LocalStore, s3_module.S3Store):
        real = cls.get_marker

        def counting(self, limit, real=real):
            reads.append(self.name)
            return real(self, limit)
        monkeypatch.setattr(cls, "get_marker", counting)
    return reads


def test_the_marker_is_written_before_the_first_record_and_read_once(tmp_path):
    """A keyed writer's calls to the store, in order, with lookups and uploads racing on
    threads: one marker read, one marker write, and both before any blob or record."""
    calls: list[str] = []
    lock = threading.Lock()

    class Recorded(LocalStore):
        is_local = False                        # uploads and lookups on threads

        def __getattribute__(self, name):
            if name in ("get_marker", "put_marker", "put_blob", "put_action", "get_action"):
                with lock:
                    calls.append(name)
            return super().__getattribute__(name)

    project = tmp_path / "p"
    project.mkdir()
    cache = ArtifactCache([StoreUse(Recorded(str(tmp_path / "s"), "recorded"), True)],
                          str(project), warn=lambda text: pytest.fail(text),
                          signing_key=b"key")
    outputs = []
    for i in range(20):
        (project / f"o{i}").write_text(f"{i}\n")
        outputs.append((f"o{i}", digest_file(str(project / f"o{i}"))))
    threads = [threading.Thread(target=cache.restore, args=(f"{n:040x}", ("x",)))
               for n in range(8)]
    for thread in threads:
        thread.start()
    for i, output in enumerate(outputs):
        cache.store(f"{i + 100:040x}", [output], b"", {})
    for thread in threads:
        thread.join()
    cache.close()
    assert calls.count("get_marker") == 1 and calls.count("put_marker") == 1, calls
    first_write = min(calls.index("put_blob"), calls.index("put_action"))
    assert calls.index("get_marker") < calls.index("put_marker") < first_write, calls
    assert calls.count("put_action") == 20


# --- 1. hostile markers -----------------------------------------------------------------

@pytest.mark.parametrize("data, problem", [
    (b"garbage{", "not JSON"),
    (b'{"signed": false, "format": 1}', 'not {"signed": true}'),
    (b'["signed"]', 'not {"signed": true}'),
    (b'{"signed": true, "format": 2}', "format '2', not 1"),
    (b" " * (MARKER_LIMIT - 30) + SIGNED_MARKER + b" " * 40, f"larger than {MARKER_LIMIT} bytes"),
])
def test_a_marker_rlmake_did_not_write_counts_as_signed(builds, directory, data, problem):
    builds.build(builds.clone("a"), directory, write=True)
    directory.set_marker(data)
    keyless = builds.build(builds.clone("b"), directory, write=True)
    assert len(keyless.ran) == JOBS, keyless
    assert keyless.warnings == [
        f"cache {directory.url}: its marker {MARKER_NAME} is not one rlmake writes ({problem}), "
        f"so it may be signed, and RLMAKE_CACHE_KEY is not set here: not restoring from it "
        "or writing to it"], keyless
    # A keyed writer warns, writes its signed records, and leaves the marker alone.
    keyed = builds.build(builds.clone("c", rules(JOBS + 1)), directory, key=KEY, write=True)
    assert len(keyed.warnings) == 3 and problem in keyed.warnings[0], keyed
    assert directory.marker() == data
    assert directory.records()[f"o{JOBS}"][1].get("signature")


@pytest.mark.integration
def test_a_damaged_marker_in_a_bucket_counts_as_signed(builds, s3):
    builds.build(builds.clone("a"), s3, write=True)
    s3.set_marker(b"\x00\xff not json")
    keyless = builds.build(builds.clone("b"), s3)
    assert len(keyless.ran) == JOBS, keyless
    assert keyless.warnings == [
        f"cache {s3.url}: its marker {MARKER_NAME} is not one rlmake writes (not JSON), "
        f"so it may be signed, and {NOT_SET_HERE}"], keyless


def test_a_huge_marker_is_not_read_whole(builds, store, monkeypatch):
    from rlmake.cache import s3 as s3_module

    builds.build(builds.clone("a"), store, key=KEY, write=True)
    store.set_marker(b"x" * (1 << 20))
    sizes: list[int] = []
    for cls in (LocalStore, s3_module.S3Store):
        real = cls.get_marker

        def measured(self, limit, real=real):
            data = real(self, limit)
            sizes.append(len(data))
            return data
        monkeypatch.setattr(cls, "get_marker", measured)
    result = builds.build(builds.clone("b"), store)
    assert len(result.ran) == JOBS and "larger than" in result.warnings[0], result
    assert sizes == [MARKER_LIMIT + 1]


@pytest.mark.parametrize("make", ["directory", "fifo", "dangling link"])
def test_a_marker_that_is_not_a_file_makes_the_store_unusable(builds, tmp_path, make):
    store = DirectoryStore(tmp_path / "shared")
    builds.build(builds.clone("a"), store, write=True)
    marker = store.root / MARKER_NAME
    if make == "directory":
        marker.mkdir()
    elif make == "fifo":
        os.mkfifo(marker)
    else:
        marker.symlink_to(tmp_path / "nowhere")
    found: list = []
    reader = threading.Thread(target=lambda: found.append(
        _try(lambda: LocalStore(str(store.root)).get_marker(MARKER_LIMIT + 1))), daemon=True)
    reader.start()
    reader.join(10)
    assert found and "cannot read" in str(found[0]), "reading the marker blocked or passed"
    for key in (None, KEY):
        result = builds.build(builds.clone(f"b-{key}"), store, key=key, write=True)
        assert len(result.ran) == JOBS and result.status == "ok", result
        [warning] = result.warnings
        assert warning.startswith(f"cache {store.url} is not usable, building without it: "
                                  f"cannot read {marker}"), result
    assert os.path.lexists(marker) and not marker.is_file(), "what rlmake did not write is kept"


def _try(call):
    try:
        return call()
    except Exception as error:      # noqa: BLE001 - the test looks at it
        return error


@pytest.mark.integration
def test_a_forbidden_marker_makes_the_store_unusable_but_the_build_goes_on(builds, s3):
    """The marker GET fails with 403 while the records could be read: a keyless reader
    cannot tell whether the store is signed, so it does not use it."""
    builds.build(builds.clone("a"), s3, write=True)
    marker = f"arn:aws:s3:::{s3.bucket}/{s3.prefix}/{MARKER_NAME}"
    with _credentials_that_cannot_read(s3, marker) as env:
        result = builds.build(builds.clone("b"), _with_env(s3, env))
    assert len(result.ran) == JOBS and result.status == "ok", result
    [warning] = result.warnings
    assert warning.startswith(f"cache {s3.url} is not usable, building without it: "), result
    assert "403" in warning or "AccessDenied" in warning, result


@pytest.mark.integration
def test_a_keyed_writer_that_cannot_write_the_marker_still_reads(builds, s3):
    builds.build(builds.clone("a"), s3, key=KEY, write=True)
    s3.set_marker(None)
    nothing = f"arn:aws:s3:::{s3.bucket}/nothing"           # may read all, write nothing
    with _credentials_that_cannot_read(s3, nothing) as env:
        result = builds.build(builds.clone("b", rules(JOBS + 1)), _with_env(s3, env),
                              key=KEY, write=True)
    assert result.ran == [f"o{JOBS}"], result                 # the rest restored
    [warning] = result.warnings
    assert warning.startswith(f"cache {s3.url}: cannot write its marker, so not writing "
                              "to it: "), result
    assert s3.marker() is None and f"o{JOBS}" not in s3.records()


def _with_env(store, extra: dict[str, str]):
    class Changed:
        url = store.url

        def env(self):
            return {**store.env(), **extra}
    return Changed()


class _credentials_that_cannot_read:
    """moto enforcing IAM: a user that may read everything but `resource`."""

    def __init__(self, store: S3Store, resource: str):
        self.store = store
        self.resource = resource

    def __enter__(self) -> dict[str, str]:
        import boto3

        iam = boto3.session.Session().client(
            "iam", endpoint_url=self.store.server.endpoint,
            region_name=self.store.credentials["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing", aws_secret_access_key="testing")
        user = f"reader-{os.urandom(4).hex()}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="no-marker", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                           "Resource": ["arn:aws:s3:::*"]},
                          {"Effect": "Deny", "Action": "s3:GetObject",
                           "Resource": [self.resource]}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        _set_moto_auth(self.store.server, "0")
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def __exit__(self, *exc) -> None:
        _set_moto_auth(self.store.server, "inf")


def _set_moto_auth(server, after_requests: str) -> None:
    import urllib.request

    request = urllib.request.Request(server.endpoint + "/moto-api/reset-auth",
                                     data=after_requests.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.mark.integration
def test_an_unreachable_store_is_one_warning_for_a_keyless_reader(builds, tmp_path):
    from s3server import free_port

    class Nobody:
        url = "s3://nobody-home/ci"

        def env(self):
            return {"RLMAKE_CACHE_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                    "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                    "AWS_DEFAULT_REGION": "us-east-1"}
    result = builds.build(builds.clone("a"), Nobody())
    assert len(result.ran) == JOBS and result.status == "ok", result
    [warning] = result.warnings
    assert "not usable" in warning and MARKER_NAME in warning, result


# --- 2. one line per store for refused records ------------------------------------------

def test_a_wrong_key_is_one_line_and_a_count(builds, store):
    builds.build(builds.clone("a"), store, key=KEY, write=True)
    result = builds.build(builds.clone("b"), store, key=OTHER_KEY)
    assert len(result.ran) == JOBS, result
    first, summary = result.warnings
    assert first.startswith(f"{REFUSED}, running the job instead: the action record for ")
    assert first.endswith(f" in {store.url} has a wrong or missing signature "
                          "(check RLMAKE_CACHE_KEY)"), result
    assert summary == (f"cache {store.url}: {JOBS} records refused: wrong or missing "
                       "signature (check RLMAKE_CACHE_KEY)")


def test_each_kind_of_refusal_is_told_once_and_counted(builds, directory):
    builds.build(builds.clone("a"), directory, write=True)
    records = directory.records()
    for name in ("o0", "o1", "o2"):                          # malformed
        where, record = records[name]
        record["format"] = 99
        directory.rewrite(where, record)
    for name in ("o3", "o4"):                                # a blob that lies
        directory.put_blob(records[name][1]["outputs"][0]["digest"], b"forged\n")
    result = builds.build(builds.clone("b"), directory)
    assert sorted(result.ran) == [f"o{i}" for i in range(5)], result
    told = [w for w in result.warnings if w.startswith(REFUSED)]
    assert len(told) == 2, result
    assert any("is malformed" in w for w in told) and any(
        "a blob for o3 in" in w or "a blob for o4 in" in w for w in told), result
    assert f"cache {directory.url}: 3 records refused: malformed" in result.warnings
    assert f"cache {directory.url}: 2 records refused: a blob does not match its digest" in \
        result.warnings
    assert len(result.warnings) == 5, result                 # and the unsigned-store warning


def test_a_single_refusal_has_no_summary(builds, directory):
    builds.build(builds.clone("a"), directory, key=KEY, write=True)
    repoint(directory, "o1", "o2")
    result = builds.build(builds.clone("b"), directory, key=KEY)
    assert len(result.warnings) == 1, result


def test_the_count_is_told_when_the_build_fails(builds, tmp_path):
    store = DirectoryStore(tmp_path / "shared")
    builds.build(builds.clone("a"), store, key=KEY, write=True)
    failing = rules(JOBS) + "  broken: {command: exit 1}\n"
    failing = failing.replace("deps: [o0,", "deps: [broken, o0,")
    result = builds.build(builds.clone("b", failing), store, key=OTHER_KEY)
    assert result.status == "failed", result
    assert result.warnings[-1].startswith(f"cache {store.url}: ") and \
        "records refused" in result.warnings[-1], result


def test_the_count_is_told_when_the_build_is_interrupted(builds, tmp_path):
    store = DirectoryStore(tmp_path / "shared")
    builds.build(builds.clone("a"), store, key=KEY, write=True)
    result = builds.build(builds.clone("b"), store, key=OTHER_KEY,
                          executor=FakeExecutor(builds.clock, interrupt_at=3))
    assert result.status == "interrupted", result
    summaries = [w for w in result.warnings if "records refused" in w]
    assert len(summaries) == 1, result


def test_a_warning_is_one_write_of_one_whole_line():
    class Writes:
        def __init__(self):
            self.writes: list[str] = []
            self.inside = 0
            self.overlapped = False

        def write(self, text: str) -> None:
            self.inside += 1
            if self.inside > 1:
                self.overlapped = True
            time.sleep(0)               # hand the GIL to another warning thread, if one waits
            self.writes.append(text)
            self.inside -= 1

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    err = Writes()
    reporter = ConsoleReporter(out=Writes(), err=err)
    threads = [threading.Thread(target=lambda n=n: [reporter.warning(f"thread {n} says {i}")
                                                  for i in range(200)]) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(err.writes) == 1200
    assert all(text.startswith("rlmake: warning: thread ") and text.endswith("\n")
               and text.count("\n") == 1 for text in err.writes), err.writes[:4]
    assert not err.overlapped


@pytest.mark.integration
def test_the_cli_prints_a_wrong_key_as_two_whole_lines(builds, s3, tmp_path):
    builds.build(builds.clone("a"), s3, key=KEY, write=True)
    b = builds.clone("b")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("RLMAKE_", "AWS_"))}
    env.update(s3.env(), CI="1", RLMAKE_CACHE_KEY=OTHER_KEY,
               AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run([*RLMAKE, "-C", str(b), "build", "-j", "8", "--cache", s3.url,
                           "--no-local-cache"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(lines) == 2 and all(line.startswith("rlmake: warning: ") for line in lines), \
        done.stderr
    assert lines[1] == (f"rlmake: warning: cache {s3.url}: {JOBS} records refused: wrong or "
                        "missing signature (check RLMAKE_CACHE_KEY)")


# --- 3. URLs that only look like URLs ---------------------------------------------------

NOT_URLS = ["s3:/bucket/rl", "s3:bucket", "gs://bucket/x", "file:relative", "S3://bucket",
            "http://host/x", "a:b", "s3:///no-bucket", "s3://", "file://"]


@pytest.mark.parametrize("value", NOT_URLS)
@pytest.mark.parametrize("origin", ["--cache", "RLMAKE_CACHE", "rlmake.toml"])
def test_a_scheme_rlmake_does_not_know_is_a_usage_error(builds, tmp_path, monkeypatch,
                                                        value, origin):
    root = builds.clone("p")
    monkeypatch.chdir(tmp_path)
    given = None
    if origin == "RLMAKE_CACHE":
        monkeypatch.setenv("RLMAKE_CACHE", value)
    elif origin == "rlmake.toml":
        (root / "rlmake.toml").write_text(f'[cache]\nurl = "{value}"\nwrite = true\n')
    else:
        given = value
    before = sorted(map(str, tmp_path.rglob("*")))
    with pytest.raises(UsageError) as raised:
        Project(str(root)).build_config(BuildOptions(), cache_url=given, cache_write=True)
    message = str(raised.value)
    assert f"'{value}'" in message and "s3://bucket/prefix" in message, message
    assert {"--cache": "--cache", "RLMAKE_CACHE": "RLMAKE_CACHE",
            "rlmake.toml": "[cache] url in rlmake.toml"}[origin] in message
    assert sorted(map(str, tmp_path.rglob("*"))) == before


@pytest.mark.parametrize("value", ["./a:b", "cache/x:y"])
def test_a_directory_with_a_colon_later_in_its_path_is_still_a_directory(
        builds, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    store = DirectoryStore(tmp_path / value)
    store.url = value
    result = builds.build(builds.clone("p"), store, write=True)
    assert sorted(result.ran) == all_outputs(), result
    assert len(store.records()) == JOBS


@pytest.mark.integration
def test_the_cli_refuses_a_typo_with_status_2_and_makes_no_directory(s3, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "Rulesfile.yaml").write_text("rules:\n  out: {command: echo x > out}\n")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("RLMAKE_", "AWS_"))}
    env.update(s3.env(), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    typo = "s3:/" + s3.url.removeprefix("s3://")
    done = subprocess.run([*RLMAKE, "build", "--cache", typo, "--cache-write"],
                          cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"'{typo}' is not a cache URL rlmake knows" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(project)) == ["Rulesfile.yaml"]
    # Not vacuous: the same build with the URL spelt right stores its result in the bucket.
    fixed = subprocess.run([*RLMAKE, "build", "--cache", s3.url, "--cache-write"],
                           cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert fixed.returncode == 0, fixed.stderr
    assert list(s3.records()) == ["out"]
