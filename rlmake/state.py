"""The state database in `.rlmake/state.db`: every SQL statement rlmake runs lives here.

SQLite in WAL mode. A job's record is written only after it succeeded and
its outputs were hashed, inside a transaction, so a crash at any moment
(SIGKILL, power loss) leaves at worst a few finished jobs unrecorded, which
the next build reruns.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable

from rlmake.errors import StateError
from rlmake.hashing import StatMemo

SCHEMA_VERSION = 5

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
)
assert len(MIGRATIONS) == SCHEMA_VERSION


@dataclass(frozen=True)
class CacheUse:
    """How one build used the artifact cache."""

    restored: int = 0
    misses: int = 0
    bytes_restored: int = 0
    bytes_stored: int = 0


@dataclass(frozen=True)
class JobRecord:
    """The last successful run of a job, as staleness needs it."""

    target: str
    run: int
    key: str
    outputs: dict[str, str]             # path -> digest it wrote
    depfile_deps: dict[str, str | None]
    inputs_json: str                    # parsed only to explain a change

    @property
    def inputs(self) -> dict[str, Any]:
        return json.loads(self.inputs_json)


def _job_record(row) -> JobRecord:
    target, run, key, outputs, depfile_deps, inputs = row
    return JobRecord(target, run, key, json.loads(outputs), json.loads(depfile_deps), inputs)


@dataclass(frozen=True)
class RunRecord:
    """One job run as it is stored: what ran, why, and what it read and wrote."""

    execution: str
    target: str
    rule: str
    key: str
    status: str
    reasons: str                        # JSON list of Reason.to_json()
    started: float
    ended: float
    exit_code: int | None
    inputs: dict[str, Any]              # commands, env, outputs, deps [[path, digest]], depfile_deps
    output_tail: str = ""
    reads: tuple[tuple[str, str | None], ...] = ()
    writes: tuple[tuple[str, str], ...] = ()
    cache_source: str | None = None


# --- reading the records back (why, log, clean) ---------------------------------------

@dataclass(frozen=True)
class Execution:
    id: str
    started: float
    ended: float | None
    argv: list[str]
    status: str
    ran: int
    cached: int
    failed: int
    restored: int = 0


@dataclass(frozen=True)
class StoredRun:
    id: int
    execution: str
    target: str
    rule: str
    key: str
    status: str
    reasons: list[dict]
    started: float
    ended: float
    exit_code: int | None
    inputs: dict[str, Any]
    output_tail: str
    cache_source: str | None = None


_EXECUTION_COLUMNS = "id, started, ended, argv, status, ran, cached, failed, restored"
_RUN_COLUMNS = ("runs.id, execution, target, rule, key, runs.status, reasons, runs.started, "
                "runs.ended, exit_code, inputs, output_tail, cache_source")


def _run(row) -> StoredRun:
    (run_id, execution, target, rule, key, status, reasons, started, ended, exit_code,
     inputs, output_tail, cache_source) = row
    return StoredRun(run_id, execution, target, rule, key, status, json.loads(reasons), started,
                     ended, exit_code, json.loads(inputs), output_tail, cache_source)


def _execution(row) -> Execution:
    return Execution(row[0], row[1], row[2], json.loads(row[3]), *row[4:])


class StateReader:
    """Queries over the records; mixed into StateDB."""

    conn: sqlite3.Connection

    def executions(self, limit: int = 20) -> list[Execution]:
        rows = self.conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY started DESC LIMIT ?", (limit,))
        return [_execution(row) for row in rows]

    def executions_starting(self, prefix: str) -> list[Execution]:
        rows = self.conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE substr(id, 1, ?) = ? "
            "ORDER BY started DESC", (len(prefix), prefix))
        return [_execution(row) for row in rows]

    def runs_of(self, execution: str) -> list[StoredRun]:
        rows = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE execution = ? "
                                 "ORDER BY runs.id", (execution,))
        return [_run(row) for row in rows]

    def last_run(self, target: str) -> StoredRun | None:
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE target = ? "
                                "ORDER BY runs.id DESC LIMIT 1", (target,)).fetchone()
        return _run(row) if row else None

    def failed_last(self) -> set[str]:
        """The targets whose most recent run failed."""
        rows = self.conn.execute(
            "SELECT target FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY target) "
            "AND status = 'failed'")
        return {target for (target,) in rows}

    def writer_of(self, path: str, digest: str, before: int | None = None) -> StoredRun | None:
        """The latest successful run that wrote `digest` to `path` (before run `before`)."""
        row = self.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM run_files JOIN runs ON runs.id = run_files.run "
            "WHERE run_files.path = ? AND run_files.digest = ? AND run_files.mode = 'w' "
            "AND runs.status IN ('done', 'restored') AND runs.id < ? "
            "ORDER BY runs.id DESC LIMIT 1",
            (path, digest, before if before is not None else 1 << 62)).fetchone()
        return _run(row) if row else None

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

    def written_digests(self) -> dict[str, set[str]]:
        """Every path a successful run wrote, with every digest it was written with."""
        written: dict[str, set[str]] = {}
        for path, digest in self.conn.execute(
                "SELECT path, digest FROM run_files JOIN runs ON runs.id = run_files.run "
                "WHERE mode = 'w' AND runs.status IN ('done', 'restored')"):
            written.setdefault(path, set()).add(digest)
        return written


class StateDB(StateReader):
    """One open state database. Writes are batched; `commit()` makes them durable."""

    def __init__(self, state_dir: str, readonly: bool = False):
        self.path = os.path.join(state_dir, "state.db")
        self._uptodate_voided = False
        if readonly and not os.path.exists(self.path):
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
            self._migrate(0)
            return
        try:
            os.makedirs(state_dir, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.DatabaseError, OSError) as error:
            raise StateError(f"cannot open the state database {self.path}: {error}; "
                             "move it aside to start afresh") from None
        if version > SCHEMA_VERSION:
            raise StateError(f"{self.path} has schema version {version}, but this rlmake "
                             f"knows only up to {SCHEMA_VERSION}: upgrade rlmake")
        self._migrate(version)
        self._in_transaction = False
        self._uptodate_voided = False

    def _migrate(self, version: int) -> None:
        for number in range(version, SCHEMA_VERSION):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        self._in_transaction = False

    def close(self) -> None:
        self.commit()
        self.conn.close()

    # --- transactions -------------------------------------------------------------------

    def _write(self, sql: str, parameters: Iterable = ()) -> sqlite3.Cursor:
        if not self._in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
        return self.conn.execute(sql, parameters)

    def _write_many(self, sql: str, rows: Iterable) -> None:
        if not self._in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
        self.conn.executemany(sql, rows)

    def commit(self) -> None:
        if self._in_transaction:
            self.conn.execute("COMMIT")
            self._in_transaction = False

    # --- reads for a build --------------------------------------------------------------

    def job_records(self) -> dict[str, JobRecord]:
        rows = self.conn.execute(
            "SELECT target, run, key, outputs, depfile_deps, inputs FROM jobs")
        return {row[0]: _job_record(row) for row in rows}

    def stat_memo(self) -> dict[str, StatMemo]:
        rows = self.conn.execute(
            "SELECT path, dev, ino, size, mtime_ns, digest, hashed_ns, ctime_ns FROM file_memo")
        return {row[0]: StatMemo(*row[1:]) for row in rows}

    # --- writes during a build ----------------------------------------------------------

    def save_stat_memo(self, entries: dict[str, StatMemo]) -> None:
        self._write_many(
            "INSERT OR REPLACE INTO file_memo (path, dev, ino, size, mtime_ns, digest, hashed_ns, "
            "ctime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((path, m.dev, m.ino, m.size, m.mtime_ns, m.digest, m.hashed_ns, m.ctime_ns)
             for path, m in entries.items()))

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

    def finish_execution(self, execution: str, ended: float, status: str, ran: int, cached: int,
                         failed: int, cache: "CacheUse | None" = None) -> None:
        cache = cache or CacheUse()
        self._write("UPDATE executions SET ended = ?, status = ?, ran = ?, cached = ?, failed = ?, "
                    "restored = ?, cache_misses = ?, bytes_restored = ?, bytes_stored = ? "
                    "WHERE id = ?", (ended, status, ran, cached, failed, cache.restored,
                                     cache.misses, cache.bytes_restored, cache.bytes_stored,
                                     execution))

    def cache_totals(self) -> tuple[int, int, int, int, int]:
        """(builds, restored, misses, bytes restored, bytes stored) over every recorded build."""
        row = self.conn.execute("SELECT count(*), coalesce(sum(restored), 0), "
                                "coalesce(sum(cache_misses), 0), coalesce(sum(bytes_restored), 0), "
                                "coalesce(sum(bytes_stored), 0) FROM executions").fetchone()
        return tuple(row)

    def record_run(self, run: RunRecord, successful: bool) -> int:
        """Store one run; a successful one becomes its job's record for staleness."""
        inputs = json.dumps(run.inputs, separators=(",", ":"))
        cursor = self._write(
            "INSERT INTO runs (execution, target, rule, key, status, reasons, started, ended, "
            "exit_code, inputs, output_tail, cache_source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.execution, run.target, run.rule, run.key, run.status, run.reasons, run.started,
             run.ended, run.exit_code, inputs, run.output_tail, run.cache_source))
        run_id = cursor.lastrowid
        self._void_uptodate()
        self._write_many("INSERT INTO run_files (run, path, digest, mode) VALUES (?, ?, ?, ?)",
                         [(run_id, path, digest, "r") for path, digest in run.reads]
                         + [(run_id, path, digest, "w") for path, digest in run.writes])
        if successful:
            self._write(
                "INSERT OR REPLACE INTO jobs (target, run, key, outputs, depfile_deps, inputs) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run.target, run_id, run.key, json.dumps(dict(run.writes)),
                 json.dumps(run.inputs.get("depfile_deps", {})), inputs))
        return run_id

    def forget_job(self, target: str) -> None:
        """The job's outputs are gone or untrusted: its next build must run it."""
        self._write("DELETE FROM jobs WHERE target = ?", (target,))
        self._void_uptodate()

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

    def job_record(self, target: str) -> JobRecord | None:
        row = self.conn.execute("SELECT target, run, key, outputs, depfile_deps, inputs FROM jobs "
                                "WHERE target = ?", (target,)).fetchone()
        return _job_record(row) if row else None

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


class MemoOnDemand(dict):
    """The digest memo, read one path at a time (a dict of what has been read or updated)."""

    def __init__(self, state: StateDB):
        super().__init__()
        self._state = state

    def get(self, path: str, default=None):
        if path not in self:
            found = self._state.stat_memo_of(path)
            if found is None:
                return default
            self[path] = found
        return self[path]
