"""S3Store.put_blob: a small file in one plain PutObject, a larger one with upload_file.

Against a real S3 service (moto_server, tests/s3server.py). What is checked: a file up
to PUT_OBJECT_BYTES is sent as one PutObject of its bytes without boto3's transfer
manager; a larger one (the limit lowered for the test) still goes through upload_file;
both read back intact; a missing bucket is a StoreError either way.
"""

from __future__ import annotations

import os

import pytest

from rlmake.cache import s3 as s3_module
from rlmake.cache.base import StoreError
from rlmake.hashing import digest_file
from s3server import CREDENTIALS, MotoServer

pytestmark = pytest.mark.integration

BUCKET = "put-blob"


@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(moto, monkeypatch):
    for name, value in {**CREDENTIALS, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    return s3_module.S3Store(f"s3://{BUCKET}/blobs", moto.endpoint)


@pytest.fixture
def calls(store, monkeypatch):
    """The S3 operations the store's client makes, and its upload_file calls."""
    made: list[str] = []
    store._client.meta.events.register(
        "before-call.s3.*", lambda model, **_: made.append(model.name))
    upload_file = store._client.upload_file

    def counted(*args, **kwargs):
        made.append("upload_file")
        return upload_file(*args, **kwargs)
    monkeypatch.setattr(store._client, "upload_file", counted)
    return made


def blob(tmp_path, size: int):
    path = tmp_path / f"blob-{size}"
    path.write_bytes(os.urandom(size))
    return str(path), digest_file(str(path))


def assert_reads_back(store, tmp_path, source: str, digest: str) -> None:
    copy = tmp_path / "copy"
    assert store.fetch_blob(digest, str(copy))
    assert copy.read_bytes() == open(source, "rb").read()


def test_a_small_blob_is_one_put_object(store, calls, tmp_path):
    source, digest = blob(tmp_path, 3000)
    store.put_blob(digest, source)
    assert calls == ["PutObject"]
    assert_reads_back(store, tmp_path, source, digest)


def test_a_blob_above_the_limit_goes_through_upload_file(store, calls, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_module, "PUT_OBJECT_BYTES", 1024)
    source, digest = blob(tmp_path, 1025)
    store.put_blob(digest, source)
    assert calls[0] == "upload_file"
    assert_reads_back(store, tmp_path, source, digest)


@pytest.mark.parametrize("size", [10, 1025])
def test_a_missing_bucket_is_a_store_error_either_way(moto, store, tmp_path, monkeypatch, size):
    monkeypatch.setattr(s3_module, "PUT_OBJECT_BYTES", 1024)
    missing = s3_module.S3Store("s3://no-such-bucket/blobs", moto.endpoint)
    source, digest = blob(tmp_path, size)
    with pytest.raises(StoreError, match="no-such-bucket"):
        missing.put_blob(digest, source)
