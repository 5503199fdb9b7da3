"""The project's own store, `.rlmake/cache`: action records and small blobs in one database.

A directory store (local.py) writes two new files for every job it stores, a
blob and an action record, each a temporary renamed into place. On a build of
many small outputs, creating those files cost the kernel more than anything else
rlmake does for a job. Here records and blobs up to SMALL_BLOB_BYTES go into
`store.db` (state.StoreDB: SQLite in WAL mode, a statement per entry), and larger
blobs stay files in `cas/`, copied with copy_file_range as before. An entry in
the database is whole or absent after a crash at any moment, as a renamed file is.

Entries of the older layout (files under `ac/` and `cas/`) are still found,
restored and collected; new ones go to the database. Housekeeping sees both:
`entries` lists the database's and then the files', and `remove` takes each from
wherever it is. The project's lock is held while a build writes here, so the
database has one writer at a time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Iterator

from rlmake.cache.base import StoreError
from rlmake.cache.housekeeping import BLOB, RECORD, Entry
from rlmake.cache.local import LocalStore, open_regular, read_all, write_all
from rlmake.errors import StateError
from rlmake.hashing import digest_bytes

if TYPE_CHECKING:
    from rlmake.state import StoreDB

DATABASE_NAME = "store.db"
# Blobs up to this size go in the database. SQLite reads a blob this small faster than
# the file system opens a file, and most objects of a build of small files fit.
SMALL_BLOB_BYTES = 64 * 1024


class ProjectStore(LocalStore):
    def __init__(self, root: str, name: str | None = None, max_bytes: int | None = None):
        super().__init__(root, name, max_bytes)
        self._database: StoreDB | None = None
        self._opening = threading.Lock()        # lookups may come from several threads
        # records of the older layout: looked for only where there may be some
        self._older_records = os.path.isdir(os.path.join(root, RECORD))
        # A store that holds nothing yet (no database, no records of the older layout) can
        # answer a lookup only with a record this object put there: a build opens its store
        # under the project's lock, so no one else writes to it until the build ends. Its
        # lookups then cost no query. None: the store had something; ask the database.
        self._only: set[str] | None = None if self._older_records or os.path.exists(
            os.path.join(root, DATABASE_NAME)) else set()

    @contextlib.contextmanager
    def _db(self) -> Iterator["StoreDB"]:
        """The database, opened (and made) at first use; its errors as StoreError."""
        database = self._opened()
        try:
            yield database
        except (sqlite3.Error, StateError) as error:
            raise _failed(database.path, error) from None

    def _opened(self) -> "StoreDB":
        """The database, opened (and made) at first use. The calls made for every job use
        this rather than `_db`, whose context manager cost more than their own work, and
        turn its errors into StoreError themselves (`_failed`)."""
        database = self._database
        if database is not None:
            return database
        with self._opening:
            if self._database is None:
                self._database = _open(self.root)
            return self._database

    def _has_database(self) -> bool:
        return self._database is not None or os.path.exists(os.path.join(self.root,
                                                                         DATABASE_NAME))

    def get_action(self, key: str) -> bytes | None:
        if self._only is not None and key not in self._only:
            return None
        database = self._opened()
        try:
            data = database.get(RECORD, key, time.time())
        except (sqlite3.Error, StateError) as error:
            raise _failed(database.path, error) from None
        if data is None and self._older_records:
            return super().get_action(key)
        return data

    def put_action(self, key: str, data: bytes) -> None:
        database = self._opened()
        try:
            database.put(RECORD, key, data, time.time())
        except (sqlite3.Error, StateError) as error:
            raise _failed(database.path, error) from None
        if self._only is not None:
            self._only.add(key)
        self.bytes_written += len(data)

    def has_blob(self, digest: str) -> bool:
        with self._db() as database:
            found = database.touch(BLOB, digest, time.time())
        return found or super().has_blob(digest)

    def fetch_blob(self, digest: str, destination: str) -> bool:
        with self._db() as database:
            data = database.get(BLOB, digest, time.time())
        if data is None:
            return super().fetch_blob(digest, destination)
        try:
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as error:
            raise StoreError(f"cannot write {destination}: {error.strerror}") from None
        return True

    def put_blob(self, digest: str, source: str) -> None:
        try:
            fd = open_regular(source)
            try:
                size = os.fstat(fd).st_size
                data = read_all(fd, SMALL_BLOB_BYTES + 1) if size <= SMALL_BLOB_BYTES else None
            finally:
                os.close(fd)
        except OSError as error:
            raise StoreError(f"cannot read {source}: {error.strerror}") from None
        if data is None or len(data) > SMALL_BLOB_BYTES:        # it grew since its fstat
            super().put_blob(digest, source)
            return
        with self._db() as database:
            database.put(BLOB, digest, data, time.time())
        self.bytes_written += len(data)

    def keep_blob(self, digest: str, source: str, replace: bool = False) -> int | None:
        """Store the output at `source` under `digest` unless the store has that blob, which
        is then marked used (has_blob and put_blob in one look at the file): the bytes
        newly stored, 0 if it had the blob, or None if `source` no longer holds the bytes
        `digest` names (rewritten since it was hashed), when nothing is stored.
        `replace`: the stored blob was found not to match its digest; write it again.

        A small output is read once, and checked against its digest before it goes into
        the database: a blob there holds the bytes its name says, whatever wrote to the
        file since it was hashed. That check is also what lets one read() do for a file
        of a regular size; only when it fails is the file read on to its end (a short
        read, as some file systems give). A larger output is copied into `cas/`, and the
        copy is read back and checked before it takes the blob's name."""
        try:
            fd = open_regular(source)
            try:
                data = os.read(fd, SMALL_BLOB_BYTES + 1)
                matches = len(data) <= SMALL_BLOB_BYTES and digest_bytes(data) == digest
                if not matches and len(data) <= SMALL_BLOB_BYTES:
                    data += read_all(fd, SMALL_BLOB_BYTES + 1 - len(data))
                    matches = len(data) <= SMALL_BLOB_BYTES and digest_bytes(data) == digest
            finally:
                os.close(fd)
        except OSError as error:
            raise StoreError(f"cannot read {source}: {error.strerror}") from None
        if len(data) > SMALL_BLOB_BYTES:
            if not replace and LocalStore.has_blob(self, digest):
                return 0
            return self.put_checked_blob(digest, source)
        if not matches:
            return None
        database = self._opened()
        now = time.time()
        try:
            if replace:
                database.put(BLOB, digest, data, now)
            elif self._older_records:       # a blob of the older layout may be a file
                if database.touch(BLOB, digest, now) or LocalStore.has_blob(self, digest):
                    return 0
                database.put(BLOB, digest, data, now)
            elif not database.put_new(BLOB, digest, data, now):
                return 0
        except (sqlite3.Error, StateError) as error:
            raise _failed(database.path, error) from None
        self.bytes_written += len(data)
        return len(data)

    def close(self) -> None:
        """Commit what is pending and close the database: the end of a build."""
        if self._database is None:
            return
        database, self._database = self._database, None
        try:
            database.close()
        except (sqlite3.Error, StateError) as error:
            raise _failed(database.path, error) from None

    # --- housekeeping ---------------------------------------------------------------------

    def entries(self):
        if self._has_database():
            with self._db() as database:
                listed = database.entries()
            for kind, name, size, used in listed:
                yield Entry(kind, name, size, used)
        yield from super().entries()

    def remove(self, entries):
        """Remove each entry from the database, or else from the files; one used since it
        was listed is skipped either way."""
        if not self._has_database():
            yield from super().remove(entries)
            return
        on_files = []
        with self._db() as database:
            removed = []
            for entry in entries:
                done = database.remove(entry.kind, entry.key, entry.last_used)
                if done is None:
                    on_files.append(entry)
                elif done:
                    removed.append(entry)
            if removed:
                database.give_back_space()
        yield from removed
        yield from super().remove(on_files)


def _open(root: str) -> "StoreDB":
    from rlmake.state import StoreDB

    path = os.path.join(root, DATABASE_NAME)
    try:
        os.makedirs(root, exist_ok=True)
        return StoreDB(path)
    except OSError as error:
        raise StoreError(f"cannot write {root}: {error.strerror}") from None
    except (sqlite3.Error, StateError) as error:
        raise _failed(path, error) from None


def _failed(path: str, error: sqlite3.Error | StateError) -> StoreError:
    text = str(error) if isinstance(error, StateError) else f"cannot use {path}: {error}"
    return StoreError(f"{text}; move it aside to start the local cache afresh"
                      if "move it aside" not in text else text)
