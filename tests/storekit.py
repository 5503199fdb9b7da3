"""The entries of a store, read and changed the way tests need to, whatever the layout:
the project's own store (.rlmake/cache) keeps records and small blobs in its database,
a directory store keeps a file for each."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from rlmake.cache.housekeeping import BLOB, RECORD
from rlmake.cache.projectstore import DATABASE_NAME
from rlmake.state import StoreDB


def _database(store: Path) -> StoreDB | None:
    path = Path(store) / DATABASE_NAME
    return StoreDB(str(path)) if path.exists() else None


def entries(store: Path, kind: str) -> dict[str, bytes]:
    """Name -> bytes of every entry of `kind` (RECORD or BLOB), in the database or a file."""
    found = {path.name: path.read_bytes() for path in (Path(store) / kind).glob("*/*")
             if path.is_file() and not path.name.startswith(".")}
    database = _database(store)
    if database is not None:
        for entry_kind, name, _, _ in database.entries():
            if entry_kind == kind:
                found[name] = database.get(kind, name, None)
        database.close()
    return found


def records(store: Path) -> dict[str, dict]:
    """Key -> action record of every record in `store`."""
    return {key: json.loads(data) for key, data in entries(store, RECORD).items()}


def only_record(store: Path) -> tuple[str, dict]:
    [(key, record)] = records(store).items()
    return key, record


def put(store: Path, kind: str, name: str, data: bytes) -> None:
    """Replace the entry where it is: in the project store's database, else as a file."""
    database = _database(store)
    if database is not None and database.get(kind, name, None) is not None:
        database.put(kind, name, data, _last_used(kind, name, database))
        database.close()
        return
    if database is not None:
        database.close()
    path = Path(store) / kind / name[:2] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _last_used(kind: str, name: str, database: StoreDB) -> float:
    return next(used for entry_kind, entry_name, _, used in database.entries()
                if (entry_kind, entry_name) == (kind, name))


def rewrite_record(store: Path, change: Callable[[dict], None]) -> None:
    """Change the store's only action record in place."""
    key, record = only_record(store)
    change(record)
    put(store, RECORD, key, json.dumps(record).encode())


def set_last_used(store: Path, kind: str, name: str, when: float) -> None:
    """Make the entry look last used at `when` (a time.time())."""
    database = _database(store)
    if database is not None and database.touch(kind, name, when):
        database.close()
        return
    if database is not None:
        database.close()
    os.utime(Path(store) / kind / name[:2] / name, (when, when))


__all__ = ["BLOB", "RECORD", "entries", "records", "only_record", "put", "rewrite_record",
           "set_last_used"]
