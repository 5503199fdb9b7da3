"""The artifact cache: restore a job's outputs by its key instead of running it.

An action record (JSON) says what a successful job wrote: each output's path,
digest and mode, the files its depfile listed with their digests, and its
captured output. Blobs are stored by digest. On a lookup, every part is
checked before anything is moved into place: the record's form and key, its
HMAC signature when a key is configured, the depfile deps' current digests,
and each blob's digest. Anything that fails is refused and the job runs
instead: the first refusal of each kind in a store is told as it happens, the
number of them once, when the build ends. Stores are tried in order (local
first); a store that errs is reported once and left alone for the rest of the
build. Whether a shared store may be read or written at all, with or without a
key, is trust.py's decision, made at its first use.

A record is read as if a stranger wrote it, signed or not: every path it names
must be a project file path (paths.is_project_path), a blob is asked for only
by a well-formed digest, a depfile dep is read only if it is a regular file, a
restored mode keeps only the permission bits, and its captured output reaches
the terminal with control characters made visible (terminal_safe).

A record says who stored it (`stored_by`: the build's execution id, the host and
rlmake's version; the time is `created`), so that `why` and `log` can tell
where restored bytes came from. Those fields are signed with the rest, checked
for their types, and used for display only; a record from before them has
none and is accepted as from an unknown build.
"""

from __future__ import annotations

import collections
import json
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

from rlmake.cache import trust
from rlmake.cache.base import Store, StoreError, new_temporary
from rlmake.cache.trust import Refusal
from rlmake.hashing import digest_file, digest_regular_file, is_digest
from rlmake.model import StoredBy
from rlmake.paths import is_project_path

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

FORMAT = 1
# How a record is written and signed: json.dumps(record, sort_keys=True), byte for byte,
# without making an encoder for every record.
_RECORD_ENCODER = json.JSONEncoder(sort_keys=True)
RESTORE_PREFIX = ".rlmake-restore-"     # a blob being fetched beside its output (`clean` removes strays)
_UPLOAD_WORKERS = 16     # uploads wait on the network, not a CPU
SEND_UNASKED_BYTES = 256 * 1024     # a remote store gets blobs up to this size unasked
_MODE_BITS = 0o777       # a restored file's mode: never setuid, setgid or sticky
_SHOWN_PATH = 100        # characters of a record's path quoted in a warning
_STORED_BY_LIMIT = 255   # characters of each `stored_by` field a record may have


class Restored(NamedTuple):
    source: str                             # the store's name
    output: bytes                           # the captured output, replayed
    depfile_deps: dict[str, str | None]
    bytes: int
    stored_by: StoredBy | None = None       # None: the record does not say (an older rlmake)


# Plain classes, not dataclasses: their code generation would cost every rebuild at import.
class CacheStats:
    def __init__(self):
        self.hits = self.misses = self.refused = 0
        self.bytes_restored = self.bytes_stored = 0


class StoreUse(NamedTuple):
    store: Store
    writable: bool              # this build may store results in it
    shared: bool = True         # not the project's own .rlmake/cache: trust.py decides


class _StoreState:
    def __init__(self, use: StoreUse):
        self.store = use.store
        self.writable = use.writable
        self.broken = False
        # Decided at the first lookup or write, by one thread while the others wait.
        self.verdict: trust.Verdict | None = None if use.shared else trust.TRUSTED
        self.deciding = threading.Lock()


class ArtifactCache:
    """Stores in lookup order; `signing_key` signs and checks action records (HMAC-SHA256);
    `execution`: the id of the build, written into the records it stores."""

    def __init__(self, stores: Sequence[StoreUse], project_dir: str,
                 warn: Callable[[str], None], signing_key: bytes | None = None,
                 execution: str | None = None):
        self.project_dir = project_dir
        self.execution = execution
        self.warn = _one_at_a_time(warn)      # lookups and uploads warn from threads
        self.signing_key = signing_key
        self.stats = CacheStats()
        self._states = [_StoreState(use) for use in stores]
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._refusals = trust.Refusals()
        self._closed = False
        self._uploads: ThreadPoolExecutor | None = None     # made for the first remote upload
        # Local stores wait for the build to be idle (`store_one`), on the thread that runs
        # it: a writer thread cost more in handing the GIL back and forth than it saved.
        self._local_writes: collections.deque = collections.deque()
        self._pending: list = []
        self._corrupt: set[str] = set()     # blobs found not to match their digest
        self._stored_by: dict[str, str] | None = None      # _this_build, made once

    @property
    def has_remote(self) -> bool:
        """Some store is not on this machine's disk: lookups are worth running in parallel."""
        return any(not getattr(state.store, "is_local", False) for state in self._states)

    # --- lookups --------------------------------------------------------------------------

    def restore(self, key: str, outputs: tuple[str, ...]) -> Restored | None:
        """Put the outputs of the job with `key` in place from the first store that has a
        verified entry; None (a miss) otherwise. Safe to call from several threads."""
        for state in self._states:
            if state.broken or not self._verdict(state).read:
                continue
            found = self._restore_from(state, key, outputs)
            if found is not None:
                restored, record = found
                with self._lock:
                    self.stats.hits += 1
                    self.stats.bytes_restored += restored.bytes
                self._fill_earlier_stores(state, key, record)
                return restored
        with self._lock:
            self.stats.misses += 1
        return None

    def _restore_from(self, state: _StoreState, key: str, outputs) -> tuple[Restored, dict] | None:
        try:
            data = state.store.get_action(key)
            if data is None:
                return None
            record = self._verified_record(data, key, outputs, state.store.name)
            if record is None or not self._depfile_deps_match(record):
                return None
            size = self._place_outputs(state.store, record)
        except StoreError as error:
            self._break(state, error)
            return None
        if size is None:
            return None
        output = terminal_safe(record.get("output", "")).encode(errors="replace")
        return Restored(state.store.name, output, record.get("depfile_deps", {}), size,
                        _stored_by(record)), record

    def _verified_record(self, data: bytes, key: str, outputs, store: str) -> dict | None:
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):
            record = None
        if not _well_formed(record, key, outputs):
            self._refuse(store, Refusal.MALFORMED,
                         f"the action record for {key[:8]} in {store} is malformed")
            return None
        if self.signing_key is not None:
            expected = _sign(self.signing_key, record)
            if not _same(str(record.get("signature", "")), expected):
                self._refuse(store, Refusal.SIGNATURE,
                             f"the action record for {key[:8]} in {store} has a wrong or "
                             "missing signature (check RLMAKE_CACHE_KEY)")
                return None
        foreign = _foreign_path(record)
        if foreign is not None:
            self._refuse(store, Refusal.FOREIGN_PATH,
                         f"the action record for {key[:8]} in {store} names "
                         f"'{terminal_safe(foreign[:_SHOWN_PATH])}', which is not a "
                         "file path in the project")
            return None
        return record

    def _depfile_deps_match(self, record: dict) -> bool:
        """The files a depfile listed are inputs too: they must read the same here. One
        that is not a regular file (a FIFO, a device) is not read and never matches."""
        for path, digest in record.get("depfile_deps", {}).items():
            full = os.path.join(self.project_dir, path)
            try:
                now = digest_regular_file(full)
            except FileNotFoundError:
                now = None
            except OSError:
                return False
            if now != digest:
                return False
        return True

    def _place_outputs(self, store: Store, record: dict) -> int | None:
        """Fetch every blob beside its output, verify it, then rename all into place."""
        staged: list[tuple[str, str]] = []
        try:
            for output in record["outputs"]:
                final = os.path.join(self.project_dir, output["path"])
                os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
                temporary = new_temporary(os.path.dirname(final) or ".", RESTORE_PREFIX)
                staged.append((temporary, final))
                if not store.fetch_blob(output["digest"], temporary):
                    self._discard(staged)
                    return None
                if digest_file(temporary) != output["digest"]:
                    with self._lock:
                        self._corrupt.add(output["digest"])
                    self._discard(staged)
                    self._refuse(store.name, Refusal.BAD_BLOB,
                                 f"a blob for {output['path']} in {store.name} "
                                 "does not match its digest")
                    return None
                os.chmod(temporary, output.get("mode", 0o644) & _MODE_BITS)
            size = sum(os.path.getsize(temporary) for temporary, _ in staged)
            for temporary, final in staged:
                os.replace(temporary, final)
            return size
        except BaseException:
            self._discard(staged)
            raise

    def _discard(self, staged) -> None:
        for temporary, _ in staged:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass

    def _refuse(self, store: str, kind: Refusal, problem: str) -> None:
        """Told the first time for each store and kind; counted for `close` after that."""
        with self._lock:
            self.stats.refused += 1
            first = self._refusals.add(store, kind)
        if first:
            self.warn(f"cache entry refused, running the job instead: {problem}")

    # --- trust ----------------------------------------------------------------------------

    def _verdict(self, state: _StoreState) -> trust.Verdict:
        """What this build may do with the store: decided at its first use, from its marker
        when that matters (one read per build), and told once."""
        verdict = state.verdict
        if verdict is not None:
            return verdict
        with state.deciding:
            if state.verdict is None:
                state.verdict = self._decide(state)
                if state.verdict.warning:
                    self.warn(state.verdict.warning)
            return state.verdict

    def _decide(self, state: _StoreState) -> trust.Verdict:
        keyed = self.signing_key is not None
        marker = trust.ABSENT
        try:
            if trust.needs_marker(keyed, state.writable):
                marker = trust.read_marker(state.store.get_marker(trust.MARKER_LIMIT + 1))
        except StoreError as error:
            self._break(state, error)
            return trust.Verdict(False, False)
        verdict = trust.decide(state.store.name, marker, keyed, state.writable)
        if verdict.mark:            # before any record; again if someone deleted it
            try:
                state.store.put_marker(trust.SIGNED_MARKER)
            except StoreError as error:     # signed records are still safe to read
                return trust.Verdict(True, False, warning=(
                    f"cache {state.store.name}: cannot write its marker, so not writing "
                    f"to it: {error}"))
        return verdict

    def _fill_earlier_stores(self, hit: _StoreState, key: str, record: dict) -> None:
        """A hit in a later store (remote) is copied into earlier writable ones (local)."""
        for state in self._states:
            if state is hit:
                return
            if state.writable and not state.broken:
                self._upload(self._store_into, state, key, record)

    # --- storing --------------------------------------------------------------------------

    def store(self, key: str, outputs: Sequence[tuple[str, str | None]], output: bytes,
              depfile_deps: dict[str, str | None]) -> None:
        """Queue a successful job's outputs for every writable store (uploaded in the
        background; `close` waits for them)."""
        writable = [state for state in self._states if state.writable and not state.broken]
        if not writable or not _storable(outputs, depfile_deps):
            return
        entries = []
        for path, digest in outputs:
            full = os.path.join(self.project_dir, path)
            entries.append({"path": path, "digest": digest,
                            "mode": os.stat(full).st_mode & _MODE_BITS})
        record = {"format": FORMAT, "key": key, "outputs": entries,
                  "depfile_deps": depfile_deps, "output": output.decode(errors="replace"),
                  "created": time.time()}
        if self.execution is not None:
            if self._stored_by is None:         # the same for every record of the build
                self._stored_by = _this_build(self.execution)
            record["stored_by"] = self._stored_by
        for state in writable:
            if getattr(state.store, "is_local", False):
                self._local_writes.append((state, key, record))
            else:
                self._upload(self._store_into, state, key, record)

    def store_one(self) -> bool:
        """Write one queued entry into a local store; False if none was queued. Called
        when the build has nothing better to do, and by `close`."""
        if not self._local_writes:
            return False
        self._store_into(*self._local_writes.popleft())
        return True

    def _store_into(self, state: _StoreState, key: str, record: dict) -> None:
        if state.broken or not self._verdict(state).write:
            return
        record = dict(record)
        record.setdefault("depfile_deps", {})
        record.setdefault("output", "")
        if self.signing_key is not None:
            record["signature"] = _sign(self.signing_key, record)
        store = state.store
        # the project's store looks for a blob and stores it in one go (ProjectStore)
        keep_blob = getattr(store, "keep_blob", None)
        try:
            stored = 0
            for output in record["outputs"]:        # blobs first: a record never dangles
                full = os.path.join(self.project_dir, output["path"])
                if keep_blob is not None:
                    kept = keep_blob(output["digest"], full, output["digest"] in self._corrupt)
                    if kept is None:        # rewritten since it was hashed: store nothing
                        return
                    stored += kept
                elif self._must_send(store, output["digest"], full):
                    store.put_blob(output["digest"], full)
                    stored += os.path.getsize(full)
            store.put_action(key, _RECORD_ENCODER.encode(record).encode())
        except Exception as error:      # noqa: BLE001 - a store's failure must not fail the build
            self._break(state, error)
            return
        with self._lock:
            self.stats.bytes_stored += stored

    def _must_send(self, store: Store, digest: str, full: str) -> bool:
        """Whether to put a blob in `store`. A remote store is asked first only for a big
        one: for a small one, asking costs a request as much as sending it again, the same
        bytes under the same name."""
        if digest in self._corrupt:
            return True
        if not getattr(store, "is_local", False) and os.path.getsize(full) <= SEND_UNASKED_BYTES:
            return True
        return not store.has_blob(digest)

    def _break(self, state: _StoreState, error: Exception) -> None:
        """A store that errs is reported once and not used again in this build."""
        state.broken = True
        with self._lock:
            first = state.store.name not in self._warned
            self._warned.add(state.store.name)
        if first:
            self.warn(f"cache {state.store.name} is not usable, building without it: {error}")

    def _upload(self, *call) -> None:
        if self._uploads is None:
            from concurrent.futures import ThreadPoolExecutor

            from rlmake.guard import hold_interrupts

            self._uploads = ThreadPoolExecutor(max_workers=_UPLOAD_WORKERS,
                                               thread_name_prefix="rlmake-cache",
                                               initializer=hold_interrupts)
        self._pending.append(self._uploads.submit(*call))

    def close(self) -> None:
        """Finish queued writes, wait for uploads, then say how many records each store
        had refused (once, however the build ended)."""
        if self._closed:
            return
        self._closed = True
        try:
            while self.store_one():
                pass
            for future in self._pending:
                future.result()
            if self._uploads is not None:
                self._uploads.shutdown(wait=True)
            for state in self._states:      # the local store's size cap (cap.py)
                after_build = getattr(state.store, "after_build", None)
                if after_build is not None and not state.broken:
                    after_build(self.warn)
        finally:
            for state in self._states:
                self._close_store(state)
            with self._lock:
                summary = self._refusals.summary()
            for line in summary:
                self.warn(line)

    def _close_store(self, state: _StoreState) -> None:
        """Let a store that holds something open (the project's database) release it, even
        when it failed: a watching rlmake goes on to the next build in this process."""
        close = getattr(state.store, "close", None)
        if close is None:
            return
        try:
            close()
        except StoreError as error:
            if not state.broken:
                self.warn(f"cache {state.store.name}: {error}")


def _one_at_a_time(warn: Callable[[str], None]) -> Callable[[str], None]:
    """`warn` for several threads: one warning is written whole before the next starts."""
    lock = threading.Lock()

    def serialised(text: str) -> None:
        with lock:
            warn(text)
    return serialised


def _well_formed(record, key: str, outputs) -> bool:
    """The record has the shape rlmake writes, for this key and these outputs."""
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
        return False
    entries = record.get("outputs")
    if not isinstance(entries, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("path"), str)
            and is_digest(entry.get("digest"))
            and type(entry.get("mode", 0o644)) is int for entry in entries):
        return False
    if sorted(entry["path"] for entry in entries) != sorted(outputs):
        return False
    deps = record.get("depfile_deps", {})
    return (isinstance(deps, dict) and all(digest is None or isinstance(digest, str)
                                           for digest in deps.values())
            and isinstance(record.get("output", ""), str)
            and ("stored_by" not in record or _well_formed_stored_by(record)))


def _well_formed_stored_by(record: dict) -> bool:
    """`stored_by` names three short strings, and the record's `created` is a time."""
    stored_by, created = record["stored_by"], record.get("created")
    return (isinstance(stored_by, dict) and set(stored_by) == {"execution", "host", "version"}
            and all(isinstance(value, str) and len(value) <= _STORED_BY_LIMIT
                    for value in stored_by.values())
            and isinstance(created, (int, float)) and not isinstance(created, bool)
            and math.isfinite(created))


def _stored_by(record: dict) -> StoredBy | None:
    """Who stored a well-formed record, shown terminal-safe; None if it does not say."""
    stored_by = record.get("stored_by")
    if stored_by is None:
        return None
    return StoredBy(_one_line(stored_by["execution"]), _one_line(stored_by["host"]),
                    float(record["created"]), _one_line(stored_by["version"]))


def _one_line(text: str) -> str:
    """`text` terminal-safe, and on one line: a host name cannot add a line to `why`."""
    return terminal_safe(text).replace("\n", "\\x0a").replace("\t", "\\x09")


def _this_build(execution: str) -> dict[str, str]:
    from rlmake import __version__

    # the name socket.gethostname() gives, without socket's 3 ms import in every build
    return {"execution": execution, "host": os.uname().nodename, "version": __version__}


def _foreign_path(record: dict) -> str | None:
    """The first path the record names that is not a project file path, if any."""
    paths = [entry["path"] for entry in record["outputs"]] + list(record.get("depfile_deps", {}))
    return next((path for path in paths if not is_project_path(path)), None)


def _storable(outputs: Sequence[tuple[str, str | None]], depfile_deps: dict) -> bool:
    """A record every lookup would refuse is not written: outputs or depfile deps outside
    the project (gcc -MD's system headers), or digests that are not of content (--hash fast)."""
    return (all(is_project_path(path) and is_digest(digest) for path, digest in outputs)
            and all(map(is_project_path, depfile_deps)))


def terminal_safe(text: str) -> str:
    """`text` with every control character but newline and tab shown as `\\xNN`, so that
    output from a store cannot move the cursor, retitle the window or answer for the
    terminal. Commands' own output is printed as it is: their colours are wanted."""
    if text.isprintable():
        return text
    return "".join(f"\\x{ord(char):02x}" if _is_control(char) and char not in "\n\t"
                   else char for char in text)


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7f <= code <= 0x9f


def _sign(key: bytes, record: dict) -> str:
    import hmac

    unsigned = {name: value for name, value in record.items() if name != "signature"}
    return hmac.new(key, _RECORD_ENCODER.encode(unsigned).encode(), "sha256").hexdigest()


def _same(signature: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(signature, expected)
