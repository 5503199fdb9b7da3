"""A store in S3-compatible object storage: `s3://bucket/prefix`.

boto3 is imported only here, and only when an s3 URL is used
(`pip install rlmake[s3]`). `endpoint_url` points it at MinIO, Ceph or any
other S3 service; credentials come from boto3's usual places.
"""

from __future__ import annotations

from urllib.parse import urlparse

from rlmake.cache.base import MARKER_NAME, StoreError

CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 30


class S3Store:
    is_local = False

    def __init__(self, url: str, endpoint_url: str | None = None):
        try:
            import boto3
            import boto3.exceptions
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise StoreError("an s3:// cache needs boto3: pip install 'rlmake[s3]'") from None
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StoreError(f"bad cache URL '{url}': expected s3://bucket/prefix")
        self.name = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._marker = "/".join(part for part in (self.prefix, MARKER_NAME) if part)
        config = botocore.config.Config(connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                        read_timeout=READ_TIMEOUT_SECONDS,
                                        retries={"max_attempts": 2, "mode": "standard"})
        self._client = boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                                      config=config)
        # upload_file and download_file wrap errors in boto3's own (S3UploadFailedError,
        # RetriesExceededError): every one of them is the store failing.
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                        boto3.exceptions.Boto3Error)
        self._client_error = botocore.exceptions.ClientError

    def _key(self, kind: str, name: str) -> str:
        return "/".join(part for part in (self.prefix, kind, name) if part)

    def _missing(self, error) -> bool:
        return (isinstance(error, self._client_error)
                and error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"))

    def get_action(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key("ac", key))
            return answer["Body"].read()
        except self._errors as error:
            if self._missing(error):
                return None
            raise StoreError(f"{self.name}: {error}") from None

    def put_action(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key("ac", key), Body=data)
        except self._errors as error:
            raise StoreError(f"{self.name}: {error}") from None

    def has_blob(self, digest: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key("cas", digest))
            return True
        except self._errors as error:
            if self._missing(error):
                return False
            raise StoreError(f"{self.name}: {error}") from None

    def fetch_blob(self, digest: str, destination: str) -> bool:
        try:        # one GET (download_file would ask for the size first)
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key("cas", digest))
            with open(destination, "wb") as stream:
                for chunk in answer["Body"].iter_chunks(1 << 20):
                    stream.write(chunk)
            return True
        except self._errors as error:
            if self._missing(error):
                return False
            raise StoreError(f"{self.name}: {error}") from None

    def put_blob(self, digest: str, source: str) -> None:
        """A file up to PUT_OBJECT_BYTES in one plain PUT of its bytes; a larger one with
        upload_file, which sends it in parts (and costs far more per call)."""
        key = self._key("cas", digest)
        data = _read_up_to(source, PUT_OBJECT_BYTES)
        try:
            if data is not None:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
            else:
                self._client.upload_file(source, self.bucket, key)
        except self._errors as error:
            raise StoreError(f"{self.name}: {error}") from None

    def get_marker(self, limit: int) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._marker)
            body = answer["Body"]
            try:
                return body.read(limit)         # a huge marker is not downloaded whole
            finally:
                body.close()
        except self._errors as error:
            if self._missing(error):
                return None
            raise StoreError(f"{self.name}: cannot read {MARKER_NAME}: {error}") from None

    def put_marker(self, data: bytes) -> None:
        """A plain PUT: the marker was found missing, and every rlmake writes the same bytes
        (a conditional PUT is not implemented by every S3-compatible service)."""
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._marker,
                                    Body=data)
        except self._errors as error:
            raise StoreError(f"{self.name}: cannot write {MARKER_NAME}: {error}") from None

    # --- housekeeping (rlmake.cache.housekeeping) ------------------------------------------

    tracks_use = False      # S3 keeps no time of access: an entry's age is since it was stored

    def entries(self):
        """Every record and blob, as housekeeping.Entry, listed 1000 keys a request: only
        `PREFIX/ac/KEY` and `PREFIX/cas/DIGEST`; anything else under the prefix (the
        store's marker, objects of other tools) is not rlmake's. `last_used` is
        LastModified, the time it was stored."""
        from rlmake.cache.housekeeping import KINDS, Entry, is_entry_name

        start = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start)
            for page in pages:
                for item in page.get("Contents", []):
                    kind, _, name = item["Key"][len(start):].partition("/")
                    if kind in KINDS and is_entry_name(name):
                        yield Entry(kind, name, item["Size"], item["LastModified"].timestamp())
        except self._errors as error:
            raise StoreError(f"{self.name}: {error}") from None

    def remove(self, entries):
        """Remove `entries` with DeleteObjects, 1000 keys a request, in order, yielding
        each one removed. An object stored again after it was listed is removed all the
        same (S3 cannot tell); the next writer that runs its job stores it again."""
        entries = list(entries)
        for start in range(0, len(entries), DELETE_BATCH):
            batch = {self._key(entry.kind, entry.key): entry
                     for entry in entries[start:start + DELETE_BATCH]}
            try:
                answer = self._client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in batch], "Quiet": True})
            except self._errors as error:
                raise StoreError(f"{self.name}: {error}") from None
            errors = answer.get("Errors", [])
            failed = {error["Key"] for error in errors}
            yield from (entry for key, entry in batch.items() if key not in failed)
            if errors:
                first = errors[0]
                raise StoreError(f"{self.name}: {len(errors)} object(s) could not be removed, "
                                 f"e.g. {first['Key']}: {first.get('Code')} "
                                 f"{first.get('Message', '')}".rstrip())


DELETE_BATCH = 1000         # the most keys one DeleteObjects request takes
PUT_OBJECT_BYTES = 8 * 1024 * 1024      # boto3's own threshold for uploading in parts


def _read_up_to(path: str, limit: int) -> bytes | None:
    """The whole of a file of at most `limit` bytes; None for a larger one."""
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)
    return data if len(data) <= limit else None
