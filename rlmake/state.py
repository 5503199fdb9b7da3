"""The state database in `.rlmake/state.db`: every SQL statement rlmake runs lives here.

SQLite in WAL mode. A job's record is written only after it succeeded and
its outputs were hashed, inside a transaction, so a crash at any moment
(SIGKILL, power loss) leaves at worst a few finished jobs unrecorded, which
the next build reruns.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sqlite3
import time
from typing import (Any, Callable, Concatenate, Iterable, NamedTuple, ParamSpec, Sequence,
                    TypeVar, overload)

from rlmake.errors import StateError
from rlmake.hashing import StatMemo
from rlmake.model import (ExecutionStatus, JobInputs, JobRecord, Reason, ReasonKind,
                          RunRecord, Status, DirIdentity, StoredBy)
from rlmake.statedir import check_state_dir, make_state_dir, unusable

SCHEMA_VERSION = 11
BUSY_SECONDS = 30           # how long to wait for another process's write to finish

# MIGRATIONS[n] takes a database from schema version n to n + 1. Never edit one
# that has shipped; append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        started REAL NOT NULL,
        ended REAL,
        argv TEXT NOT NULL,
        status TEXT NOT NULL,
        ran INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        execution TEXT NOT NULL REFERENCES executions(id),
        target TEXT NOT NULL,
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        status TEXT NOT NULL,
        reasons TEXT NOT NULL,          -- JSON list of Reason.to_json()
        started REAL NOT NULL,
        ended REAL NOT NULL,
        exit_code INTEGER,
        inputs TEXT NOT NULL,
        output_tail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX runs_by_target ON runs(target);
    CREATE INDEX runs_by_execution ON runs(execution);
    CREATE TABLE run_files (
        run INTEGER NOT NULL REFERENCES runs(id),
        path TEXT NOT NULL,
        digest TEXT,
        mode TEXT NOT NULL CHECK (mode IN ('r', 'w'))
    );
    CREATE INDEX run_files_by_path ON run_files(path);
    CREATE TABLE jobs (
        target TEXT PRIMARY KEY,
        run INTEGER NOT NULL REFERENCES runs(id),
        key TEXT NOT NULL,
        outputs TEXT NOT NULL,
        depfile_deps TEXT NOT NULL,
        inputs TEXT NOT NULL
    );
    CREATE TABLE file_memo (
        path TEXT PRIMARY KEY,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        digest TEXT NOT NULL,
        hashed_ns INTEGER NOT NULL
    );
    """,
    # 2: snapshots of plans found wholly up to date, for the no-op fast path (uptodate.py).
    """
    CREATE TABLE uptodate (
        plan TEXT NOT NULL,
        hash_mode TEXT NOT NULL,
        taken_ns INTEGER NOT NULL,
        snapshot BLOB NOT NULL,
        PRIMARY KEY (plan, hash_mode)
    );
    """,
    # 3: the artifact cache: where a restored run came from, and each build's cache use.
    """
    ALTER TABLE runs ADD COLUMN cache_source TEXT;
    ALTER TABLE executions ADD COLUMN restored INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN cache_misses INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN bytes_restored INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN bytes_stored INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: snapshots in pieces, so that an edit rewrites only the pieces it touched; a
    # snapshot is void once the records have changed since (records_version).
    """
    DROP TABLE uptodate;
    CREATE TABLE records_version (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        version INTEGER NOT NULL
    );
    INSERT INTO records_version (id, version) VALUES (0, 0);
    CREATE TABLE uptodate (
        plan TEXT NOT NULL,
        hash_mode TEXT NOT NULL,
        records_version INTEGER NOT NULL,
        depfile_readers BLOB NOT NULL,
        PRIMARY KEY (plan, hash_mode)
    );
    CREATE TABLE uptodate_pieces (
        plan TEXT NOT NULL,
        hash_mode TEXT NOT NULL,
        piece INTEGER NOT NULL,
        taken_ns INTEGER NOT NULL,
        entries BLOB NOT NULL,
        PRIMARY KEY (plan, hash_mode, piece)
    );
    """,
    # 5: the memo's key has the ctime, which an edit that puts the mtime back still moves;
    # an entry from before has 0, which no file matches, so it is hashed again.
    """
    ALTER TABLE file_memo ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: early cutoff on record, for why, log and -v: whether a run wrote exactly what its
    # job's previous successful run wrote (NULL: no such run, or recorded before), and the
    # jobs a build kept up to date because a dep was rebuilt to identical bytes.
    """
    ALTER TABLE runs ADD COLUMN same_outputs INTEGER;
    CREATE TABLE kept (
        execution TEXT NOT NULL REFERENCES executions(id),
        target TEXT NOT NULL,
        deps TEXT NOT NULL
    );
    CREATE INDEX kept_by_execution ON kept(execution);
    """,
    # 7: the directories rlmake made for outputs, with their inode, which `clean` removes
    # once empty if they are still the ones it made.
    """
    CREATE TABLE made_dirs (path TEXT PRIMARY KEY, ino INTEGER NOT NULL);
    """,
    # 8: who stored the action record a restored run came from (JSON of model.StoredBy, as
    # the record said; NULL: it ran, or the record did not say), for why and log.
    """
    ALTER TABLE runs ADD COLUMN stored_by TEXT;
    """,
    # 9: the generation of each made directory's inode (NULL where the file system keeps
    # none), since a new directory can get a freed inode number at once. Rows from
    # before get a generation of -1, which matches no directory: clean keeps those.
    """
    ALTER TABLE made_dirs ADD COLUMN generation INTEGER DEFAULT -1;
    """,
    # 10: the jobs whose last run failed, or whose command a build stopped unfinished
    # (rlmake killed, or interrupted). Their records are gone; until a run of theirs
    # succeeds they are run, never restored from a store, which would leave what the
    # command half wrote beside the outputs (a depfile) as it was.
    """
    CREATE TABLE unfinished (target TEXT PRIMARY KEY);
    """,
    # 11: how each unfinished job's last run ended, for why and -v: 1 stopped, 0 failed,
    # NULL listed before it was said (then a recorded failure says it failed). A run's
    # reasons may now be LAST_RUN_STOPPED, which an rlmake of schema 10 cannot read.
    """
    ALTER TABLE unfinished ADD COLUMN stopped INTEGER;
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION


class _Schema(NamedTuple):
    what: str                       # how messages name the database
    migrations: tuple[str, ...]     # migrations[n] takes it from schema version n to n + 1

    @property
    def version(self) -> int:
        return len(self.migrations)


_STATE = _Schema("state database", MIGRATIONS)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. When another process is switching the same new database, SQLite
    says 'database is locked' at once instead of waiting: try again for a while."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            busy = (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _fit(*numbers: int) -> bool:
    """Whether SQLite can store each of `numbers` (a signed 64-bit integer)."""
    return not numbers or (-(1 << 63) <= min(numbers) and max(numbers) < (1 << 63))


def _roll_back(conn: sqlite3.Connection) -> None:
    """Roll back what a failed write left pending. SQLite has already rolled back after
    some errors (a full disk): then a ROLLBACK fails, and its error would hide the one the
    user can act on."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass                            # gone with the connection, or never begun


def _schema_version(conn: sqlite3.Connection, path: str, schema: _Schema) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema.version:
        raise StateError(f"{path} has schema version {version}, but this rlmake "
                         f"knows only up to {schema.version}: upgrade rlmake")
    return version


def _migrate(conn: sqlite3.Connection, path: str, schema: _Schema) -> None:
    """Bring the schema up to date in one transaction (the caller rolls back on an error).
    The version is read again inside it: another process may have made the tables since
    this one looked (two first builds at once), and then there is nothing left to do."""
    conn.execute("BEGIN IMMEDIATE")
    version = _schema_version(conn, path, schema)
    for number in range(version, schema.version):
        _apply_migration(conn, path, schema, number, version)
    if version != schema.version:
        conn.execute(f"PRAGMA user_version = {schema.version}")
    conn.execute("COMMIT")


def _apply_migration(conn: sqlite3.Connection, path: str, schema: _Schema, number: int,
                     found: int) -> None:
    try:
        for statement in schema.migrations[number].split(";"):
            if statement.strip():
                conn.execute(statement)
    except sqlite3.OperationalError as error:
        # e.g. a user_version lowered by hand: the tables are newer than it says. The
        # caller rolls back, so nothing is lost. A full disk, a read-only file or a
        # lock is not that: its own message says what to do.
        if (getattr(error, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_ERROR:
            raise
        raise StateError(f"the {schema.what} {path} says it has schema version "
                         f"{found}, but its tables do not match ({error}): it was changed "
                         "by something other than rlmake; move it aside to start afresh"
                         ) from None


class CacheUse(NamedTuple):
    """How one build used the artifact cache."""

    restored: int = 0
    misses: int = 0
    bytes_restored: int = 0
    bytes_stored: int = 0


# --- encoding and decoding: the one place that knows how records are stored ---------------

def _json_encoder(separators: tuple[str, str]) -> Callable[[Any], str]:
    """`json.dumps(value, separators=separators)`, text for text, as one call: dumps makes
    a new C encoder on every call (a few microseconds, three to four times a recorded
    run), this one is made once. Tuples are written as lists, as dumps writes them. Only
    the check for a structure that holds itself is left out: records never do."""
    encoder = json.JSONEncoder(separators=separators, check_circular=False)
    make_encoder = getattr(json.encoder, "c_make_encoder", None)   # what dumps makes
    try:
        if make_encoder is None:
            raise TypeError("no C encoder")
        # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
        # skipkeys, allow_nan), as JSONEncoder.iterencode passes them
        chunks = make_encoder(None, encoder.default, json.encoder.encode_basestring_ascii,
                              None, encoder.key_separator, encoder.item_separator, False,
                              False, True)
    except TypeError:           # another Python: what dumps itself does, a little slower
        return encoder.encode

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))
    return encode


_dumps = _json_encoder((", ", ": "))        # json.dumps(value)
_dumps_compact = _json_encoder((",", ":"))  # json.dumps(value, separators=(",", ":"))


def _encode_inputs(inputs: JobInputs) -> str:
    return _dumps_compact({"commands": inputs.commands, "env": inputs.env,
                           "outputs": inputs.outputs, "deps": inputs.deps,
                           "depfile_deps": inputs.depfile_deps, "vars": inputs.vars})


def _decode_inputs(text: str) -> JobInputs:
    data = json.loads(text)
    return JobInputs(tuple(data.get("commands", ())), data.get("env", {}),
                     tuple(data.get("outputs", ())),
                     tuple((path, digest) for path, digest in data.get("deps", ())),
                     data.get("depfile_deps", {}), data.get("vars", {}))


# A row as sqlite3 returns it: the types of its values are the schema's, which Python
# does not see.
Row = tuple[Any, ...]

_Class = TypeVar("_Class", bound=type)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


# The encoding of a run's reasons when it is one that names no file (never built, -B,
# always): the same for every such run of a build.
_BARE_REASONS: dict[str, str] = {}


def _encode_reasons(reasons: tuple[Reason, ...]) -> str:
    if len(reasons) == 1:
        reason = reasons[0]
        if reason.path is None and reason.old is None and reason.new is None:
            text = _BARE_REASONS.get(reason.kind.name)
            if text is None:
                text = _BARE_REASONS[reason.kind.name] = _dumps([reason.to_json()])
            return text
    return _dumps([reason.to_json() for reason in reasons])


def _decode_reasons(text: str) -> tuple[Reason, ...]:
    return tuple(Reason.from_json(data) for data in json.loads(text))


def _job_record(row: Row) -> JobRecord:
    target, run, key, outputs, depfile_deps, inputs = row
    return JobRecord(target, run, key, json.loads(outputs), json.loads(depfile_deps),
                     lambda: _decode_inputs(inputs))


# --- reading the records back (why, log, clean) ---------------------------------------

class Execution(NamedTuple):
    id: str
    started: float
    ended: float | None
    argv: list[str]
    status: ExecutionStatus
    ran: int
    cached: int
    failed: int
    restored: int = 0


_EXECUTION_COLUMNS = "id, started, ended, argv, status, ran, cached, failed, restored"
_RUN_COLUMNS = ("runs.id, execution, target, rule, key, runs.status, reasons, runs.started, "
                "runs.ended, exit_code, inputs, output_tail, cache_source, same_outputs, stored_by")


def _run(row: Row) -> RunRecord:
    (run_id, execution, target, rule, key, status, reasons, started, ended, exit_code,
     inputs, output_tail, cache_source, same_outputs, stored_by) = row
    return RunRecord(execution, target, rule, key, Status(status), _decode_reasons(reasons),
                     started, ended, exit_code, _decode_inputs(inputs), output_tail,
                     cache_source=cache_source, id=run_id,
                     same_outputs=None if same_outputs is None else bool(same_outputs),
                     stored_by=None if stored_by is None else StoredBy.from_json(json.loads(stored_by)))


def _execution(row: Row) -> Execution:
    return Execution(row[0], row[1], row[2], json.loads(row[3]), ExecutionStatus(row[4]),
                     *row[5:])


# --- SQLite's errors, as the user reads them -------------------------------------------

_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_ADVICE = {
    sqlite3.SQLITE_READONLY: "make it and its directory writable",
    sqlite3.SQLITE_CANTOPEN: "make it and its directory writable",
    sqlite3.SQLITE_PERM: "make it and its directory writable",
    sqlite3.SQLITE_BUSY: "another process holds it: try again when that one is done",
    sqlite3.SQLITE_LOCKED: "another process holds it: try again when that one is done",
    sqlite3.SQLITE_FULL: "the disk is full: free some space",
}


def _state_error(path: str, error: sqlite3.DatabaseError) -> StateError:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF     # the primary result code
    if code in _DAMAGED:
        return StateError(f"the state database {path} is damaged ({error}); "
                          "move it aside to start afresh")
    advice = _ADVICE.get(code, "move it aside to start afresh")
    return StateError(f"cannot use the state database {path}: {error}; {advice}")


def _translating_errors(cls: _Class) -> _Class:
    """Wrap every public method of `cls` so that an error from SQLite (a page found damaged by a
    query long after opening, a read-only file, a lock held too long) becomes a StateError
    naming the database, for every caller at once. A pending transaction is rolled back
    first: half a batch of records is never committed."""
    def guard(method: Callable[Concatenate[StateReader, _P], _R]
              ) -> Callable[Concatenate[StateReader, _P], _R]:
        @functools.wraps(method)
        def guarded(self: StateReader, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.ProgrammingError:
                raise                       # a mistake in rlmake's SQL, not in the database
            except sqlite3.DatabaseError as error:
                self._abandon_transaction()
                raise _state_error(self.path, error) from None
        return guarded

    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_"):
            setattr(cls, name, guard(value))
    return cls


@_translating_errors
class StateReader:
    """Queries over the records; mixed into StateDB."""

    conn: sqlite3.Connection
    path: str

    def _abandon_transaction(self) -> None:
        """Roll back what a failed write left pending (StateDB's writes only)."""

    def executions(self, limit: int = 20) -> list[Execution]:
        rows = self.conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY started DESC LIMIT ?", (limit,))
        return [_execution(row) for row in rows]

    def executions_starting(self, prefix: str) -> list[Execution]:
        rows = self.conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE substr(id, 1, ?) = ? "
            "ORDER BY started DESC", (len(prefix), prefix))
        return [_execution(row) for row in rows]

    def cache_use_of(self, execution: str) -> CacheUse:
        """How the build `execution` used the artifact cache (all zero if it did not)."""
        row = self.conn.execute("SELECT restored, cache_misses, bytes_restored, bytes_stored "
                                "FROM executions WHERE id = ?", (execution,)).fetchone()
        return CacheUse(*row) if row else CacheUse()

    def runs_of(self, execution: str) -> list[RunRecord]:
        rows = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE execution = ? "
                                 "ORDER BY runs.id", (execution,))
        return [_run(row) for row in rows]

    def last_run(self, target: str) -> RunRecord | None:
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE target = ? "
                                "ORDER BY runs.id DESC LIMIT 1", (target,)).fetchone()
        return _run(row) if row else None

    def ran_in(self, execution: str, target: str, key: str) -> RunRecord | None:
        """The run of `target` with job key `key` whose command ran and succeeded in
        `execution`, if this project recorded one."""
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE execution = ? AND "
                                "target = ? AND key = ? AND status = 'done' LIMIT 1",
                                (execution, target, key)).fetchone()
        return _run(row) if row else None

    def unfinished(self) -> set[str]:
        """The jobs whose last run failed or was stopped unfinished, not run to success
        since."""
        return {target for (target,) in self.conn.execute("SELECT target FROM unfinished")}

    def failed_last(self) -> set[str]:
        """The targets whose most recent run failed."""
        rows = self.conn.execute(
            "SELECT target FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY target) "
            "AND status = 'failed'")
        return {target for (target,) in rows}

    def unfinished_ends(self) -> dict[str, ReasonKind]:
        """How the last run ended of each job that has not run to success since: it failed,
        or its command was stopped unfinished."""
        failed = self.failed_last()         # also those listed before the list said how
        ends = dict.fromkeys(failed, ReasonKind.LAST_RUN_FAILED)
        for target, stopped in self.conn.execute("SELECT target, stopped FROM unfinished"):
            if stopped or (stopped is None and target not in failed):
                ends[target] = ReasonKind.LAST_RUN_STOPPED
            else:
                ends[target] = ReasonKind.LAST_RUN_FAILED
        return ends

    def writer_of(self, path: str, digest: str, before: int | None = None,
                  after: int = 0) -> RunRecord | None:
        """The latest successful run that wrote `digest` to `path` (before run `before`,
        after run `after`)."""
        row = self.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM run_files JOIN runs ON runs.id = run_files.run "
            "WHERE run_files.path = ? AND run_files.digest = ? AND run_files.mode = 'w' "
            "AND runs.status IN ('done', 'restored') AND runs.id < ? AND runs.id > ? "
            "ORDER BY runs.id DESC LIMIT 1",
            (path, digest, before if before is not None else 1 << 62, after)).fetchone()
        return _run(row) if row else None

    def last_success(self, target: str) -> RunRecord | None:
        """The latest run of `target` that succeeded (ran or was restored)."""
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE target = ? AND "
                                "status IN ('done', 'restored') ORDER BY runs.id DESC LIMIT 1",
                                (target,)).fetchone()
        return _run(row) if row else None

    def kept_in(self, execution: str) -> list[tuple[str, list[str]]]:
        """The jobs `execution` kept because a dep was rebuilt to identical bytes, with
        those deps."""
        rows = self.conn.execute("SELECT target, deps FROM kept WHERE execution = ? "
                                 "ORDER BY rowid", (execution,))
        return [(target, json.loads(deps)) for target, deps in rows]

    def job_record(self, target: str) -> JobRecord | None:
        row = self.conn.execute("SELECT target, run, key, outputs, depfile_deps, inputs FROM jobs "
                                "WHERE target = ?", (target,)).fetchone()
        return _job_record(row) if row else None

    def file_summary(self) -> list[tuple[str, str, str | None, float]]:
        """Every file the records read or wrote: (path, 'r'|'w'|'rw', latest digest, when)."""
        rows = self.conn.execute(
            "SELECT path, group_concat(DISTINCT mode), max(runs.ended) FROM run_files "
            "JOIN runs ON runs.id = run_files.run GROUP BY path ORDER BY path").fetchall()
        latest = dict(((path, mode), digest) for path, mode, digest in self.conn.execute(
            "SELECT path, mode, digest FROM run_files ORDER BY run"))
        summary = []
        for path, modes, when in rows:
            mode = "".join(m for m in "rw" if m in modes)
            digest = latest.get((path, "w")) or latest.get((path, "r"))
            summary.append((path, mode, digest, when))
        return summary

    def wrote(self, target: str, path: str, digest: str) -> bool:
        """Whether a successful run of the job `target` wrote `digest` to `path`."""
        row = self.conn.execute(
            "SELECT 1 FROM run_files JOIN runs ON runs.id = run_files.run "
            "WHERE run_files.path = ? AND run_files.digest = ? AND run_files.mode = 'w' "
            "AND runs.target = ? AND runs.status IN ('done', 'restored') LIMIT 1",
            (path, digest, target)).fetchone()
        return row is not None

    def written_digests(self) -> dict[str, set[str]]:
        """Every path a successful run wrote, with every digest it was written with."""
        written: dict[str, set[str]] = {}
        for path, digest in self.conn.execute(
                "SELECT path, digest FROM run_files JOIN runs ON runs.id = run_files.run "
                "WHERE mode = 'w' AND runs.status IN ('done', 'restored')"):
            written.setdefault(path, set()).add(digest)
        return written

    def writers(self) -> dict[str, set[str]]:
        """Every path a successful run wrote, with the targets of the jobs that wrote it."""
        found: dict[str, set[str]] = {}
        for path, target in self.conn.execute(
                "SELECT DISTINCT path, target FROM run_files JOIN runs ON runs.id = run_files.run "
                "WHERE mode = 'w' AND runs.status IN ('done', 'restored')"):
            found.setdefault(path, set()).add(target)
        return found


# The run_files rows of one run in one INSERT when they are few (most runs read a
# source or two and write one file); more go through executemany, one row at a time.
_FEW_FILES = 8
_INSERT_RUN_FILES = {count: "INSERT INTO run_files (run, path, digest, mode) VALUES "
                     + ", ".join(["(?, ?, ?, ?)"] * count) for count in range(1, _FEW_FILES + 1)}


@_translating_errors
class StateDB(StateReader):
    """One open state database. Writes are batched; `commit()` makes them durable."""

    def __init__(self, state_dir: str, readonly: bool = False):
        self.path = os.path.join(state_dir, "state.db")
        self._uptodate_voided = False
        if readonly and not os.path.exists(self.path):
            check_state_dir(state_dir)
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
            self._migrate()
            return
        make_state_dir(state_dir)
        if os.path.isdir(self.path):        # SQLite would say only 'unable to open'
            raise unusable("state database", self.path,
                           IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        except sqlite3.DatabaseError as error:
            raise _state_error(self.path, error) from None
        try:
            _use_wal(self.conn)
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if _schema_version(self.conn, self.path, _STATE) != SCHEMA_VERSION:
                self._migrate()
        except sqlite3.DatabaseError as error:
            self.conn.close()
            raise _state_error(self.path, error) from None
        except BaseException:
            self.conn.close()
            raise

    def _migrate(self) -> None:
        try:
            _migrate(self.conn, self.path, _STATE)
        except BaseException:
            _roll_back(self.conn)
            raise

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.conn.close()

    def _abandon_transaction(self) -> None:
        _roll_back(self.conn)

    # --- transactions ---------------------------------------------------------------------
    # SQLite's own word on whether a transaction is open, never a flag of ours: an interrupt
    # between COMMIT and setting a flag would leave the flag wrong.

    def _write(self, sql: str, parameters: Sequence[object] = ()) -> sqlite3.Cursor:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn.execute(sql, parameters)

    def _write_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(sql, rows)

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    # --- reads for a build --------------------------------------------------------------

    def job_records(self) -> dict[str, JobRecord]:
        rows = self.conn.execute(
            "SELECT target, run, key, outputs, depfile_deps, inputs FROM jobs")
        return {row[0]: _job_record(row) for row in rows}

    def last_durations(self, targets: list[str]) -> dict[str, float]:
        """How long each target's latest run that ran its command and succeeded took, in
        one query (the targets travel as one JSON parameter: no limit on their number)."""
        rows = self.conn.execute(
            "SELECT target, ended - started FROM runs WHERE id IN (SELECT max(id) FROM runs "
            "WHERE target IN (SELECT value FROM json_each(?)) AND status = 'done' "
            "GROUP BY target)", (json.dumps(targets),))
        return {target: max(0.0, seconds) for target, seconds in rows}

    def stat_memo(self) -> dict[str, StatMemo]:
        rows = self.conn.execute(
            "SELECT path, dev, ino, size, mtime_ns, digest, hashed_ns, ctime_ns FROM file_memo")
        return {row[0]: StatMemo(*row[1:]) for row in rows}

    # --- writes during a build ----------------------------------------------------------

    def save_stat_memo(self, entries: dict[str, StatMemo]) -> None:
        """Remember each entry whose stat SQLite can hold: a file dated after 2262, or an
        inode number past 2**63, is hashed on every build instead."""
        self._write_many(
            "INSERT OR REPLACE INTO file_memo (path, dev, ino, size, mtime_ns, digest, hashed_ns, "
            "ctime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((path, m.dev, m.ino, m.size, m.mtime_ns, m.digest, m.hashed_ns, m.ctime_ns)
             for path, m in entries.items()
             if _fit(m.dev, m.ino, m.size, m.mtime_ns, m.hashed_ns, m.ctime_ns)))

    def start_execution(self, execution: str, started: float, argv: list[str]) -> None:
        """The build's row, committed with its first batch of records (a build killed before
        then leaves nothing behind, which is what it did)."""
        self._write("INSERT INTO executions (id, started, argv, status) VALUES (?, ?, ?, 'running')",
                    (execution, started, json.dumps(argv)))

    def record_noop(self, execution: str, started: float, argv: list[str], cached: int) -> None:
        """A build that found everything up to date, in one short transaction."""
        self._write("INSERT INTO executions (id, started, ended, argv, status, cached) "
                    "VALUES (?, ?, ?, ?, 'succeeded', ?)",
                    (execution, started, started, json.dumps(argv), cached))
        self.commit()

    def finish_execution(self, execution: str, ended: float, status: ExecutionStatus, ran: int,
                         cached: int,
                         failed: int, cache: "CacheUse | None" = None) -> None:
        cache = cache or CacheUse()
        self._write("UPDATE executions SET ended = ?, status = ?, ran = ?, cached = ?, failed = ?, "
                    "restored = ?, cache_misses = ?, bytes_restored = ?, bytes_stored = ? "
                    "WHERE id = ?", (ended, status.value, ran, cached, failed, cache.restored,
                                     cache.misses, cache.bytes_restored, cache.bytes_stored,
                                     execution))

    def cache_totals(self) -> tuple[int, int, int, int, int]:
        """(builds, restored, misses, bytes restored, bytes stored) over every recorded build."""
        row = self.conn.execute("SELECT count(*), coalesce(sum(restored), 0), "
                                "coalesce(sum(cache_misses), 0), coalesce(sum(bytes_restored), 0), "
                                "coalesce(sum(bytes_stored), 0) FROM executions").fetchone()
        return tuple(row)

    def record_run(self, run: RunRecord) -> int:
        """Store one run; a successful one becomes its job's record for staleness."""
        inputs = _encode_inputs(run.inputs)
        status = run.status
        cursor = self._write(
            "INSERT INTO runs (execution, target, rule, key, status, reasons, started, ended, "
            "exit_code, inputs, output_tail, cache_source, same_outputs, stored_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.execution, run.target, run.rule, run.key, status.value,
             _encode_reasons(run.reasons), run.started,
             run.ended, run.exit_code, inputs, run.output_tail, run.cache_source,
             None if run.same_outputs is None else int(run.same_outputs),
             None if run.stored_by is None else _dumps(run.stored_by.to_json())))
        run_id = cursor.lastrowid
        if run_id is None:                  # SQLite gives every inserted row one
            raise StateError(f"the state database gave no row to the run of {run.target}")
        if not self._uptodate_voided:
            self._void_uptodate()
        # the transaction _write began is open: the rest go straight to the connection
        files = [(run_id, path, digest, "r") for path, digest in run.reads]
        files += [(run_id, path, digest, "w") for path, digest in run.writes]
        if run.side_files:
            files += [(run_id, path, digest, "w") for path, digest in run.side_files]
        if 0 < len(files) <= _FEW_FILES:    # one statement: half of what executemany costs
            self.conn.execute(_INSERT_RUN_FILES[len(files)],
                              [value for row in files for value in row])
        elif files:
            self.conn.executemany(_INSERT_RUN_FILES[1], files)
        if status is Status.DONE or status is Status.RESTORED:
            depfile_deps = run.inputs.depfile_deps
            self.conn.execute(
                "INSERT OR REPLACE INTO jobs (target, run, key, outputs, depfile_deps, inputs) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run.target, run_id, run.key, _dumps(dict(run.writes)),
                 _dumps(depfile_deps) if depfile_deps else "{}", inputs))
        return run_id

    def made_dirs(self, made: Iterable[tuple[str, DirIdentity]]) -> None:
        """Directories rlmake created for outputs: (project path, (inode, generation)). One
        whose identity SQLite cannot hold is not recorded: `clean` then leaves it."""
        self._write_many("INSERT OR REPLACE INTO made_dirs (path, ino, generation) "
                         "VALUES (?, ?, ?)", [(path, ino, generation)
                                              for path, (ino, generation) in made
                                              if _fit(ino, generation or 0)])

    def dirs_made(self) -> dict[str, DirIdentity]:
        """Each directory rlmake made for outputs, with its identity then."""
        return {path: (ino, generation) for path, ino, generation
                in self.conn.execute("SELECT path, ino, generation FROM made_dirs")}

    def forget_dirs(self, paths: Iterable[str]) -> None:
        self._write_many("DELETE FROM made_dirs WHERE path = ?", [(path,) for path in paths])

    def record_kept(self, execution: str, kept: list[tuple[str, tuple[str, ...]]]) -> None:
        """The jobs a build kept up to date because these deps came out identical."""
        self._write_many("INSERT INTO kept (execution, target, deps) VALUES (?, ?, ?)",
                         [(execution, target, json.dumps(list(deps))) for target, deps in kept])

    def job_failed(self, target: str) -> None:
        """The job's command failed: its outputs are gone or untrusted, and whatever else it
        wrote (its depfile) may be half written. Builds must run it, not restore it, until
        a run of it succeeds."""
        self._unfinished([target], stopped=False)

    def mark_unfinished(self, targets: Iterable[str]) -> None:
        """Their commands were stopped unfinished: as job_failed, for each, committed at
        once."""
        self._unfinished(list(targets), stopped=True)
        self.commit()

    def _unfinished(self, targets: list[str], stopped: bool) -> None:
        """Forget the jobs' records (a change to what is up to date only if there were
        some) and list them as unfinished, with how their last run ended, until
        `finished`."""
        changes = self.conn.total_changes
        self._write_many("DELETE FROM jobs WHERE target = ?", [(t,) for t in targets])
        if self.conn.total_changes != changes:
            self._void_uptodate()
        self._write_many("INSERT OR REPLACE INTO unfinished (target, stopped) VALUES (?, ?)",
                         [(target, int(stopped)) for target in targets])

    def finished(self, target: str) -> None:
        """A run of an unfinished job succeeded."""
        self._write("DELETE FROM unfinished WHERE target = ?", (target,))

    # --- up-to-date snapshots -------------------------------------------------------------

    def _void_uptodate(self) -> None:
        """A recorded run changes what is up to date: every snapshot taken before is void."""
        if not self._uptodate_voided:
            self._write("UPDATE records_version SET version = version + 1")
            self._uptodate_voided = True

    def uptodate(self, plan: str, hash_mode: str) -> tuple[bytes, list[tuple[int, bytes]]] | None:
        """(depfile readers, [(taken_ns, entries)] in order) of a snapshot still valid."""
        head = self.conn.execute(
            "SELECT depfile_readers FROM uptodate WHERE plan = ? AND hash_mode = ? AND "
            "records_version = (SELECT version FROM records_version)", (plan, hash_mode)).fetchone()
        if head is None:
            return None
        pieces = self.conn.execute(
            "SELECT taken_ns, entries FROM uptodate_pieces WHERE plan = ? AND hash_mode = ? "
            "ORDER BY piece", (plan, hash_mode)).fetchall()
        return head[0], pieces

    def save_uptodate(self, plan: str, hash_mode: str, depfile_readers: bytes,
                      pieces: dict[int, tuple[int, bytes]], count: int) -> None:
        """Make the snapshot current: its head, the `pieces` given (number -> taken_ns,
        entries) and no piece numbered `count` or above. Void snapshots are removed."""
        self._write("INSERT OR REPLACE INTO uptodate (plan, hash_mode, records_version, "
                    "depfile_readers) VALUES (?, ?, (SELECT version FROM records_version), ?)",
                    (plan, hash_mode, depfile_readers))
        self._write("DELETE FROM uptodate_pieces WHERE (plan, hash_mode) IN (SELECT plan, "
                    "hash_mode FROM uptodate WHERE records_version != (SELECT version FROM "
                    "records_version))")
        self._write("DELETE FROM uptodate WHERE records_version != (SELECT version FROM "
                    "records_version)")
        self._write("DELETE FROM uptodate_pieces WHERE plan = ? AND hash_mode = ? AND piece >= ?",
                    (plan, hash_mode, count))
        self._write_many("INSERT OR REPLACE INTO uptodate_pieces (plan, hash_mode, piece, "
                         "taken_ns, entries) VALUES (?, ?, ?, ?, ?)",
                         [(plan, hash_mode, number, taken, entries)
                          for number, (taken, entries) in pieces.items()])

    def retime_uptodate(self, plan: str, hash_mode: str, times: dict[int, int]) -> None:
        """Pieces whose too-fresh entries were verified by content: trust them by stat now."""
        self._write_many("UPDATE uptodate_pieces SET taken_ns = ? WHERE plan = ? AND "
                         "hash_mode = ? AND piece = ?",
                         [(taken, plan, hash_mode, number) for number, taken in times.items()])

    # --- reading a few records instead of all -----------------------------------------

    def stat_memo_of(self, path: str) -> StatMemo | None:
        row = self.conn.execute("SELECT dev, ino, size, mtime_ns, digest, hashed_ns, ctime_ns "
                                "FROM file_memo WHERE path = ?", (path,)).fetchone()
        return StatMemo(*row) if row else None


class RecordsOnDemand:
    """Job records read one at a time, for builds that decide only a few jobs."""

    def __init__(self, state: StateDB):
        self._state = state
        self._read: dict[str, JobRecord | None] = {}

    def get(self, target: str) -> JobRecord | None:
        if target not in self._read:
            self._read[target] = self._state.job_record(target)
        return self._read[target]


class MemoOnDemand(dict[str, StatMemo]):
    """The digest memo, read one path at a time (a dict of what has been read or updated)."""

    def __init__(self, state: StateDB):
        super().__init__()
        self._state = state

    @overload
    def get(self, path: str, default: None = None, /) -> StatMemo | None: ...

    @overload
    def get(self, path: str, default: StatMemo, /) -> StatMemo: ...

    @overload
    def get(self, path: str, default: _T, /) -> StatMemo | _T: ...

    def get(self, path: str, default: _T | None = None, /) -> StatMemo | _T | None:
        if path not in self:
            found = self._state.stat_memo_of(path)
            if found is None:
                return default
            self[path] = found
        return self[path]


# --- the project's own artifact store: its records and small blobs ------------------------

# STORE_MIGRATIONS[n] takes the store's database from schema version n to n + 1.
STORE_MIGRATIONS: tuple[str, ...] = (
    # 1: each entry by its kind (cache.housekeeping's RECORD or BLOB) and name (a job key
    # or a digest), with the time of its last use, by which the size cap removes entries
    """
    CREATE TABLE entries (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        data BLOB NOT NULL,
        used REAL NOT NULL,
        PRIMARY KEY (kind, name)
    );
    """,
)
_STORE = _Schema("local cache database", STORE_MIGRATIONS)


class StoreDB:
    """The database of the project's own artifact store (cache/projectstore.py). Writes
    are committed WRITES_PER_COMMIT at a time and on `close` (a commit per entry cost more
    than the file it replaced): a build killed at any moment leaves every entry whole or
    absent, and loses at worst the last few, which costs running those jobs again. Lookups
    may come from several threads, so each call holds a lock. Errors are sqlite3's or
    StateError."""

    WRITES_PER_COMMIT = 256

    def __init__(self, path: str):
        import threading

        self.path = path
        self._lock = threading.Lock()
        self._uncommitted = 0
        self.conn = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None,
                                    check_same_thread=False)
        try:
            # before the first table is made: then a collection can give its space back
            self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            _use_wal(self.conn)
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if _schema_version(self.conn, path, _STORE) != _STORE.version:
                try:
                    _migrate(self.conn, path, _STORE)
                except BaseException:
                    _roll_back(self.conn)
                    raise
        except BaseException:
            self.conn.close()
            raise

    def get(self, kind: str, name: str, now: float | None) -> bytes | None:
        """The entry's bytes, marked used at `now` (if given); None if there is none."""
        with self._lock:
            row = self.conn.execute("SELECT data FROM entries WHERE kind = ? AND name = ?",
                                    (kind, name)).fetchone()
            if row is not None and now is not None:
                self._mark_used(kind, name, now)
        return None if row is None else bytes(row[0])

    def touch(self, kind: str, name: str, now: float) -> bool:
        """Mark the entry used at `now`; whether there is one."""
        with self._lock:
            return self._mark_used(kind, name, now)

    def _mark_used(self, kind: str, name: str, now: float) -> bool:
        return self._write("UPDATE entries SET used = ? WHERE kind = ? AND name = ?",
                           (now, kind, name)) > 0

    def put(self, kind: str, name: str, data: bytes, now: float) -> None:
        with self._lock:
            self._write("INSERT OR REPLACE INTO entries (kind, name, data, used) "
                        "VALUES (?, ?, ?, ?)", (kind, name, data, now))

    def put_new(self, kind: str, name: str, data: bytes, now: float) -> bool:
        """Add the entry unless there is one, which is then marked used at `now` instead
        (its bytes kept): whether it was added. One statement for a new entry, where a
        touch first took two."""
        with self._lock:
            if self._write("INSERT OR IGNORE INTO entries (kind, name, data, used) "
                           "VALUES (?, ?, ?, ?)", (kind, name, data, now)):
                return True
            self._mark_used(kind, name, now)
            return False

    def _write(self, sql: str, parameters: Sequence[object]) -> int:
        """Run a write in the open transaction; the number of rows it changed."""
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
        changed = self.conn.execute(sql, parameters).rowcount
        self._uncommitted += 1
        if self._uncommitted >= self.WRITES_PER_COMMIT:
            self._commit()
        return changed

    def _commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self._uncommitted = 0

    def entries(self) -> list[tuple[str, str, int, float]]:
        """(kind, name, size, last used) of every entry."""
        with self._lock:
            return self.conn.execute(
                "SELECT kind, name, length(data), used FROM entries").fetchall()

    def remove(self, kind: str, name: str, last_used: float) -> bool | None:
        """Remove the entry unless it was used after `last_used`: True if removed, False if
        kept for that, None if there is no such entry."""
        with self._lock:
            if self._write("DELETE FROM entries WHERE kind = ? AND name = ? AND used <= ?",
                           (kind, name, last_used)):
                return True
            found = self.conn.execute("SELECT 1 FROM entries WHERE kind = ? AND name = ?",
                                      (kind, name)).fetchone()
        return False if found else None

    def give_back_space(self) -> None:
        """Return the pages removed entries freed to the file system."""
        with self._lock:
            self._commit()
            # executescript steps the statement to its end; execute frees one page only
            self.conn.executescript("PRAGMA incremental_vacuum")

    def close(self) -> None:
        with self._lock:
            try:
                self._commit()
            finally:
                self.conn.close()
