"""Runs jobs on a Dask cluster (`rlmake build --executor dask --scheduler tcp://HOST:8786`).

The scheduler stays in the client: staleness, caching and records happen
there as for local jobs; only each job's commands travel. Files reach the
workers one of two ways:

- shared: the project path is the same on every worker (an HPC cluster's
  shared filesystem); the commands run there in place;
- staged: a worker fetches the job's inputs into a scratch directory, runs the
  commands there and sends the outputs back; the client restores them, verified
  by digest. Small files (up to `_INLINE_FILE_BYTES`) travel in the task and in
  its result; larger ones through the shared artifact store (`--cache`), by digest.

`auto` (the default) uses shared when a worker can see a file the client
just wrote in the project, else staged when a shared store is configured,
else stops with an error that says both. Staging writes to the store, so it
needs `--cache-write`; before any job is sent, the client and every worker
write a probe blob there and read it back, so that a worker without rlmake or
without the store's credentials stops the build once, saying which. Commands
on a worker die with it, and a job Dask runs again after losing a worker waits
for the old copy (tether.py). `distributed` is imported only here.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from rlmake.errors import ExecutorLost, UsageError
from rlmake.executors import FILE_MODES, WORKER_WAIT_SECONDS
from rlmake.executors.base import Completion, Task
from rlmake.executors.local import run_task, wait_on
from rlmake.executors.tether import JobLock, Tether, lock_path
from rlmake.cache.artifacts import SEND_UNASKED_BYTES
from rlmake.hashing import digest_bytes, digest_file

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from distributed import Future, Worker

    from rlmake.cache.base import Store

CONNECT_TIMEOUT = "5s"
_STOP_SECONDS = 5.0         # for cancelled commands to be stopped on the workers
_TRANSFER_THREADS = 8       # staged: uploads of inputs and downloads of outputs at once
# Staged: files up to this size travel in Dask's own messages (the task, its result), up
# to _INLINE_TASK_BYTES of them each way per job; larger ones go through the store.
_INLINE_FILE_BYTES = 256 * 1024
_INLINE_TASK_BYTES = 2 * 1024 * 1024
# What the client and each worker write to the store, and read back, before staging.
_PROBE = b"rlmake: a probe that the client and the Dask workers share this store (%s)\n"

# A file a staged job wrote: its digest, its mode, and its bytes when they travel inline
# (else the worker put them in the store).
_Written = tuple[str, int, bytes | None]
# What a staged job returns: its completion, and each file it wrote.
_Staged = tuple[Completion, dict[str, _Written]]


@dataclass(frozen=True)
class StoreSpec:
    """How a worker opens the shared store (stores themselves do not travel)."""

    url: str
    endpoint_url: str | None = None

    def open(self) -> Store:
        """The store, opened once per process: an S3 store's boto3 client costs a third
        of a second of CPU to make, more than a small job takes to run."""
        if not self.url.startswith("s3://"):
            from rlmake.cache.local import LocalStore

            # cheap, and not kept: it remembers the directories it made, which may go
            return LocalStore(self.url.removeprefix("file://"), self.url)
        with _open_stores_lock:
            store = _open_stores.get(self)
            if store is None:
                from rlmake.cache.s3 import S3Store

                store = _open_stores[self] = S3Store(self.url, self.endpoint_url)
            return store


# A worker process runs many jobs against the same store, from several threads: boto3
# clients may be shared between threads.
_open_stores: dict[StoreSpec, Store] = {}
_open_stores_lock = threading.Lock()


class DaskExecutor:
    def __init__(self, project_dir: str, scheduler: str | None, file_mode: str = "auto",
                 store: StoreSpec | None = None, say=print, *,
                 store_writable: bool = False, worker_wait: float = WORKER_WAIT_SECONDS,
                 cluster_logs: bool = False):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs the distributed package: "
                             "pip install 'rlmake[dask]'") from None
        if file_mode == "staged":       # known before connecting: stop at once
            _check_can_stage(store, store_writable, None)
        self.project_dir = project_dir
        self._finished: queue.SimpleQueue[Completion | _Lost] = queue.SimpleQueue()
        self._futures: dict[str, Future[Completion | _Staged]] = {}
        self._lock = threading.Lock()       # _futures and _stopped, for the staging threads
        self._stopped = False               # cancelled or closed: submit nothing more
        self._cluster = None
        self._lost: str | None = None       # why the cluster can run nothing any more
        self._worker_wait = worker_wait
        self._workerless = _Absence(worker_wait)
        self._workers_asked = 0.0           # when, on the monotonic clock
        self._log_levels = {} if cluster_logs else _quiet_cluster_logs()
        try:
            if scheduler:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
                self.address = scheduler
            else:
                self._cluster = cluster = LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None)
                self.client = Client(cluster)
                self.address = cluster.scheduler_address
        except (OSError, TimeoutError) as error:
            _restore_log_levels(self._log_levels)
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
        try:
            workers = self._wait_for_workers(worker_wait)
            self.total_threads = sum(nthreads for nthreads in workers.values())
            self.mode = self._choose_mode(file_mode, store, store_writable)
            self.store = store if self.mode == "staged" else None
            self._client_store = self.store.open() if self.store is not None else None
            self._transfers = self._check_staging() if self.store is not None else None
        except BaseException:
            self.close()
            raise
        self._in_store: set[str] = set()    # digests known to be in the store, this build
        where = scheduler or "a local Dask cluster"
        say(f"rlmake: running jobs on {where}, files {self._describe_mode()} "
            f"({_count(len(workers), 'worker')}, {_count(self.total_threads, 'thread')})")

    def _wait_for_workers(self, seconds: float) -> dict[str, int]:
        """Each connected worker's threads, once there is one: before any probe of the
        workers' files, which a cluster without workers would answer with nothing."""
        try:
            self.client.wait_for_workers(1, timeout=seconds)
        except TimeoutError:
            raise UsageError(f"no workers connected to the Dask scheduler at {self.address} "
                             f"after {seconds:g} s: start some (dask worker {self.address}), "
                             "or wait longer with RLMAKE_DASK_WORKER_WAIT=SECONDS") from None
        except OSError as error:
            raise ExecutorLost(_went_away(self.address, error)) from None
        return {address: info["nthreads"]
                for address, info in self.client.scheduler_info()["workers"].items()}

    def _describe_mode(self) -> str:
        if self.store is None:
            return f"on a shared filesystem at {self.project_dir}"
        return f"staged through {self.store.url}"

    def _choose_mode(self, requested: str, store: StoreSpec | None, writable: bool) -> str:
        if requested not in FILE_MODES:
            raise UsageError(f"unknown file mode '{requested}': use one of {', '.join(FILE_MODES)}")
        if requested in ("auto", "shared") and self._workers_share_the_project():
            return "shared"
        if requested == "shared":
            raise UsageError(f"the Dask workers cannot see {self.project_dir}: "
                             "no shared filesystem (use --dask-files staged with --cache)")
        _check_can_stage(store, writable, None if requested == "staged" else self.project_dir)
        return "staged"

    def _workers_share_the_project(self) -> bool:
        token = secrets.token_hex(8)
        probe = os.path.join(self.project_dir, ".rlmake", f"dask-probe-{token}")
        os.makedirs(os.path.dirname(probe), exist_ok=True)
        with open(probe, "w") as stream:
            stream.write(token)
        try:
            seen = self._ask_every_worker(_read_probe, probe)
            return bool(seen) and all(answer == token for answer in seen.values())
        except OSError as error:        # the scheduler went away meanwhile
            raise ExecutorLost(_went_away(self.address, error)) from None
        finally:
            os.remove(probe)

    def _check_staging(self) -> ThreadPoolExecutor:
        """Before any job is sent: this machine writes a probe blob to the store, every
        worker writes one of its own and reads this machine's, and this machine reads
        each worker's.
        Without rlmake, credentials or the same store there, every job would fail alike."""
        from concurrent.futures import ThreadPoolExecutor

        assert self.store is not None
        url = self.store.url
        step, mine = _check_store_here(self.store, None)
        if step != "ok":
            raise UsageError(f"cannot write to {url} from this machine: {mine}; staged Dask "
                             "builds upload every job's inputs there")
        answers = self._ask_every_worker(_check_store_here, self.store, mine)
        for name, (step, detail) in answers.items():
            if step == "ok":
                problem = _read_back(self.store.open(), detail)
                if problem:
                    raise UsageError(_staging_problem("this machine", f"the Dask worker {name}",
                                                      url, *problem))
            else:
                raise UsageError(_staging_problem(f"the Dask worker {name}", "this machine",
                                                  url, step, detail))
        return ThreadPoolExecutor(_TRANSFER_THREADS, thread_name_prefix="rlmake-stage")

    def _ask_every_worker(self, function: Callable, *args) -> dict[str, Any]:
        """`function(*args)` on every worker, by worker name; a worker that cannot import
        rlmake (so cannot even read the function) stops the build, saying so."""
        answers = self.client.run(function, *args, on_error="return")
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        named = {}
        for address, answer in answers.items():
            name = workers.get(address, {}).get("name", address)
            name = f"{name} ({address})" if str(name) != address else address
            if isinstance(answer, BaseException):
                if "No module named 'rlmake" in str(answer):
                    raise UsageError(f"the Dask worker {name} cannot import rlmake ({answer}): "
                                     "install rlmake, the same version as here, on every "
                                     "worker (pip install 'rlmake[dask]')")
                raise UsageError(f"the Dask worker {name} failed a check before the build: "
                                 f"{type(answer).__name__}: {answer}")
            named[name] = answer
        return named

    # --- the executor protocol ----------------------------------------------------------

    def start(self, task: Task) -> None:
        if self._lost is None and self.client.status != "running":
            self._lost = _went_away(self.address, None)
        if self._lost is not None:          # submitted, it would wait for a scheduler forever
            self._finished.put(_LOST)
            return
        if self._transfers is None:
            self._submit(task, _run_shared, lock_path(self.project_dir, task.id))
        else:       # the uploads run beside the build, not on its thread
            self._transfers.submit(self._stage_and_submit, task)

    def _submit(self, task: Task, function: Callable, *args) -> None:
        with self._lock:
            if self._stopped:
                self._finished.put(Completion(task.id, -signal.SIGTERM, b"", time.time(),
                                              time.time(), error="interrupted"))
                return
            future = self.client.submit(function, task, *args, pure=False,
                                        key=f"rlmake-{task.id}-{secrets.token_hex(4)}")
            self._futures[task.id] = future
        future.add_done_callback(lambda done, task=task: self._collect(task, done))

    def _stage_and_submit(self, task: Task) -> None:
        started = time.time()
        try:
            inline = self._upload_inputs(task)
            self._submit(task, _run_staged, self.store, inline)
        except Exception as error:      # noqa: BLE001 - on a thread: the build must hear of it
            self._finished.put(Completion(task.id, 1, b"", started, time.time(),
                                          error=f"could not stage its inputs: {error}"))

    def _staging_store(self) -> Store:
        """The shared store as the client opened it; only a staged executor has one."""
        if self._client_store is None:
            raise RuntimeError("files are staged only through a shared store")
        return self._client_store

    def _upload_inputs(self, task: Task) -> dict[str, bytes]:
        """The bytes of the inputs small enough to travel in the task, by path; put the
        others in the store, each unless it is known to be there. A small file is sent
        without asking first: one request, where asking costs one and often a second."""
        store = self._staging_store()
        inline: dict[str, bytes] = {}
        budget = _INLINE_TASK_BYTES
        for path, digest in task.inputs:
            if os.path.isabs(path):
                continue                    # outside the project: the worker's own file
            full = os.path.join(self.project_dir, path)
            size = os.path.getsize(full)
            if size <= min(_INLINE_FILE_BYTES, budget):
                data = _read_small(full, size)
                if data is not None:        # else it grew meanwhile: through the store
                    inline[path] = data
                    budget -= len(data)
                    continue
            if digest in self._in_store:
                continue
            if size <= SEND_UNASKED_BYTES or not store.has_blob(digest):
                store.put_blob(digest, full)
            self._in_store.add(digest)
        return inline

    def _collect(self, task: Task, future: Future[Completion | _Staged]) -> None:
        started = time.time()
        try:
            result = future.result()
        except BaseException as error:     # noqa: BLE001 - lost worker, lost scheduler, cancel
            if self._lost is not None or self._scheduler_went_away(error):
                if self._lost is None:
                    self._lost = _went_away(self.address, error)
                self._finished.put(_LOST)   # wakes `wait`, after what finished before
                return
            self._finished.put(Completion(task.id, 1, b"", started, time.time(),
                                          error=f"the Dask cluster could not run it: "
                                                f"{type(error).__name__}: {error}"))
            return
        if isinstance(result, Completion):      # ran in place: nothing to bring back
            self._finished.put(result)
            return
        assert self._transfers is not None
        # Dask runs every done callback on one thread: downloads would queue behind it
        self._transfers.submit(self._finish_staged, *result)

    def _finish_staged(self, completion: Completion, written: dict[str, _Written]) -> None:
        self._in_store.update(digest for digest, _, data in written.values() if data is None)
        try:
            problem = self._restore_outputs(written) if completion.exit_code == 0 else None
        except Exception as error:      # noqa: BLE001 - on a thread: the build must hear of it
            problem = f"staged outputs could not be brought back: {error}"
        if problem:
            completion = completion._replace(exit_code=1, error=problem)
        self._finished.put(completion)

    def _restore_outputs(self, written: dict[str, _Written]) -> str | None:
        """Bring a staged job's outputs into the project, each verified against its digest."""
        for path, (digest, mode, data) in written.items():
            if not restore_output(os.path.join(self.project_dir, path), digest, mode, data,
                                  self._staging_store()):
                return f"staged output {path} did not arrive intact"
        return None

    def _scheduler_went_away(self, error: BaseException) -> bool:
        """Whether a task ended because the client lost its scheduler (every task then
        ends so at once), not because of the task itself or a cancel of rlmake's own."""
        from distributed.comm.core import CommClosedError

        if getattr(error, "reason", None) == "scheduler-connection-lost":
            return True                 # distributed cancels every future so
        if isinstance(error, CommClosedError):
            return True                 # a result being fetched when the connection closed
        return self.client.status != "running"     # reconnecting, or given up and closed

    def wait(self, timeout: float | None = None) -> Completion | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _WORKER_CHECK_SECONDS if deadline is None else \
                min(_WORKER_CHECK_SECONDS, max(0.0, deadline - time.monotonic()))
            completion = wait_on(self._finished, step)
            if isinstance(completion, _Lost):
                raise ExecutorLost(self._lost or _went_away(self.address, None))
            if completion is not None:
                with self._lock:
                    self._futures.pop(completion.id, None)
                return completion
            self._check_workers()
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _check_workers(self) -> None:
        """Tasks wait while the scheduler has no worker: one that comes back runs them.
        None for `worker_wait` seconds (they all died, or were stopped) ends the build,
        which would otherwise wait for ever."""
        with self._lock:
            waiting = len(self._futures)
        if not waiting or self._lost:
            self._workerless.reset()
            return
        now = time.monotonic()
        if now - self._workers_asked < _WORKER_CHECK_SECONDS:
            return                          # the scheduler is asked once a second at most
        self._workers_asked = now
        try:
            workers = self.client.scheduler_info(n_workers=1).get("workers") or {}
        except Exception:   # noqa: BLE001 - a scheduler that is gone is told by its tasks
            return
        if self._workerless.longer_than_allowed(bool(workers), now):
            raise ExecutorLost(
                f"the Dask scheduler at {self.address} has had no worker for "
                f"{self._worker_wait:g} s, with {_count(waiting, 'job')} waiting for one. "
                "The jobs that were running there were not recorded; start workers "
                f"(dask worker {self.address}) and build again, wait longer with "
                "RLMAKE_DASK_WORKER_WAIT=SECONDS, or build with --executor local")

    def cancel(self) -> None:
        """Cancel every task, then wait (a few seconds at most) until the workers have
        stopped their commands: a worker only notices between polls, and one of a
        LocalCluster dies with rlmake, leaving its commands running, if it has not."""
        with self._lock:
            self._stopped = True            # tasks still being staged are not sent
            futures = list(self._futures.values())
        if not futures:
            return
        keys = [future.key for future in futures]
        self.client.cancel(futures, force=True)
        deadline = time.monotonic() + _STOP_SECONDS
        while time.monotonic() < deadline:
            try:
                still = self.client.run(_executing, keys)
            except Exception:       # noqa: BLE001 - a lost worker runs nothing any more
                return
            if not any(still.values()):
                return
            time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        try:
            transfers = getattr(self, "_transfers", None)
            if transfers is not None:
                transfers.shutdown(wait=True, cancel_futures=True)
            # a client whose scheduler went away has nothing to say goodbye to
            self.client.close(timeout=1 if self._lost else None)
            if self._cluster is not None:
                self._cluster.close()
        finally:
            _restore_log_levels(self._log_levels)


def restore_output(final: str, digest: str, mode: int, data: bytes | None,
                   store: Store) -> bool:
    """Put at `final` the file of digest `digest`: `data` if it travelled inline, else
    the store's blob. Whether it did; a worker's bytes are never taken unverified, and
    `final` is replaced only by a whole file (a temporary beside it, then a rename)."""
    directory = os.path.dirname(final) or "."
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".rlmake-staged-")
    try:
        if data is not None:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
        else:
            os.close(descriptor)
            if not store.fetch_blob(digest, temporary):
                return False
        if digest_file(temporary) != digest:        # what is on disk, not what was meant
            return False
        os.chmod(temporary, mode)
        os.replace(temporary, final)
        return True
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _read_small(path: str, size: int) -> bytes | None:
    """The bytes of a file expected to hold `size` of them; None if it holds more."""
    with open(path, "rb") as stream:
        data = stream.read(size + 1)
    return data if len(data) <= size else None


class _Lost:
    """Put on the queue of completions when the scheduler went away."""


_LOST = _Lost()
_WORKER_CHECK_SECONDS = 1.0     # how often a build waiting on Dask asks for its workers


class _Absence:
    """How long something has been missing, told one look at a time."""

    def __init__(self, allowed: float):
        self.allowed = allowed
        self._since: float | None = None

    def reset(self) -> None:
        self._since = None

    def longer_than_allowed(self, present: bool, now: float) -> bool:
        if present:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return now - self._since > self.allowed


def _went_away(address: str, error: BaseException | None) -> str:
    if error is None or getattr(error, "reason", None) == "scheduler-connection-lost":
        how = "rlmake lost its connection to it"
    elif isinstance(error, OSError):            # distributed's CommClosedError is one
        how = "the connection to it closed"
    else:
        how = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return (f"the Dask scheduler at {address} went away: {how}. The jobs that were running "
            "there were not recorded; build again once it is back, or with --executor local")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _quiet_cluster_logs() -> dict[str, int]:
    """distributed writes its own log lines to stderr (a handler it adds on import):
    connection retries, and a lost scheduler's tracebacks by the dozen lines. rlmake says
    what happened in its own words, so without -v only critical lines pass. Returns the
    levels it replaced, for `_restore_log_levels`."""
    import logging

    names = [name for name in list(logging.root.manager.loggerDict)
             if name.startswith("distributed.")]
    previous = {}
    for name in ("distributed", *names):
        logger = logging.getLogger(name)
        if name == "distributed" or logger.level != logging.NOTSET:   # the rest inherit
            previous[name] = logger.level
            logger.setLevel(logging.CRITICAL)
    return previous


def _restore_log_levels(levels: dict[str, int]) -> None:
    import logging

    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _staging_problem(who: str, writer: str, url: str, step: str, why: str) -> str:
    if step == "missing":
        return (f"{who} does not find in {url} what {writer} wrote there ({why}): every "
                "worker must reach the same store as this machine (a directory store must be "
                "one directory that every worker mounts at the same path)")
    verb = "write to" if step == "write" else "read from"
    return (f"{who} cannot {verb} {url}: {why}; staged mode needs rlmake installed on every "
            "worker and the store's credentials there")


def _check_can_stage(store: StoreSpec | None, writable: bool, unseen: str | None) -> None:
    """Staging needs a shared store and write access to it; `unseen` is the project
    directory when `auto` found that the workers cannot see it, None for `staged`."""
    if store is None and unseen is None:
        raise UsageError("--dask-files staged needs a shared store to stage files through: "
                         "pass --cache s3://bucket/prefix or --cache DIR (a directory "
                         "every worker can reach)")
    if store is None:
        raise UsageError(f"the Dask workers cannot see {unseen} and no shared "
                         "cache is configured to stage files through: mount the project "
                         "at the same path on every worker, or pass --cache s3://... or "
                         "--cache DIR (a directory every worker can reach)")
    if not writable:
        why = "--dask-files staged" if unseen is None else \
            f"the Dask workers cannot see {unseen}, so files must be staged through the store"
        raise UsageError(f"{why}: staging writes every job's inputs and outputs to "
                         f"{store.url}, and the cache is read-only: pass --cache-write (or "
                         "set RLMAKE_CACHE_WRITE=1), with write credentials to the store "
                         "here and on every worker")


# --- run on the workers -----------------------------------------------------------------

def _run_shared(task: Task, lock: str) -> Completion:
    """Run in place once no other copy of the job runs (the file `lock`, see tether.py);
    stop the command's process group once the task is cancelled (Ctrl-C, or the client
    gone), or if this worker dies."""
    cancelled = _cancellation_check()
    held = JobLock.acquire(lock, cancelled)
    if held is None:
        return Completion(task.id, -signal.SIGTERM, b"", time.time(), time.time(),
                          error="interrupted")
    try:
        with Tether() as tether:
            return run_task(task, cancelled=cancelled, tether=tether, keep_fds=(held.fd,))
    finally:
        held.release()


def _cancellation_check():
    """A function that says whether the task running on this worker thread is no longer
    wanted. Dask cannot interrupt a running task; it only marks it cancelled."""
    from distributed import get_worker
    from distributed.worker import thread_state

    try:
        worker, key = get_worker(), thread_state.key
    except (ValueError, AttributeError):     # not on a worker's thread: nothing cancels it
        return lambda: False

    def cancelled() -> bool:
        state = worker.state.tasks.get(key)
        return state is None or state.state in ("cancelled", "released", "forgotten")
    return cancelled


def _executing(keys: list[str], dask_worker: Worker) -> list[str]:
    """Which of these tasks a thread of this worker is still running (Client.run passes
    the worker as `dask_worker`)."""
    wanted = set(keys)
    return [key for key in list(dask_worker.active_threads.values()) if key in wanted]


def _read_probe(path: str) -> str | None:
    try:
        with open(path) as stream:
            return stream.read()
    except OSError:
        return None


def _check_store_here(spec: StoreSpec, theirs: str | None) -> tuple[str, str]:
    """Write a probe blob of our own, then read back the probe blob `theirs` (if
    given): ("ok", our blob's digest), or what failed ("write", "read", or "missing":
    read, but not there or altered) and why."""
    try:
        store = spec.open()
        with tempfile.TemporaryDirectory(prefix="rlmake-probe-") as scratch:
            source = os.path.join(scratch, "probe")
            with open(source, "wb") as stream:       # new bytes each time: a new blob
                stream.write(_PROBE % secrets.token_hex(16).encode())
            digest = digest_file(source)
            store.put_blob(digest, source)
    except Exception as error:      # noqa: BLE001 - whatever it is, it is the answer
        return "write", _reason(error)
    if theirs is not None:
        problem = _read_back(store, theirs)
        if problem:
            return problem
    return "ok", digest


def _read_back(store: Store, digest: str) -> tuple[str, str] | None:
    """Why the probe blob `digest` cannot be read from `store` ("read" or "missing",
    and the reason), or None."""
    with tempfile.TemporaryDirectory(prefix="rlmake-probe-") as scratch:
        copy = os.path.join(scratch, "probe")
        try:
            if not store.fetch_blob(digest, copy):
                return "missing", "the probe blob is not there"
        except Exception as error:      # noqa: BLE001 - whatever it is, it is the answer
            return "read", _reason(error)
        if digest_file(copy) != digest:
            return "missing", "the probe blob read back altered"
    return None


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__


def _run_staged(task: Task, spec: StoreSpec, inline: dict[str, bytes]) -> _Staged:
    """Write the inputs into a scratch directory (those in `inline` from there, the
    others fetched from the store), run, send back what the job wrote.
    Copies of a job never share a directory: a rerun need not wait for the old one."""
    store = spec.open()
    scratch = tempfile.mkdtemp(prefix="rlmake-job-")
    try:
        for path, digest in task.inputs:
            if os.path.isabs(path):
                continue                    # outside the project: the worker's own file
            destination = os.path.join(scratch, path)
            os.makedirs(os.path.dirname(destination) or scratch, exist_ok=True)
            if not _stage_input(store, digest, inline.get(path), destination):
                return Completion(task.id, 1, b"", time.time(), time.time(),
                                  error=f"input {path} could not be staged intact"), {}
        local = task._replace(cwd=scratch, make_dirs=tuple(
            os.path.join(scratch, os.path.relpath(d, task.cwd)) for d in task.make_dirs))
        with Tether() as tether:
            completion = run_task(local, cancelled=_cancellation_check(), tether=tether)
        written: dict[str, _Written] = {}
        if completion.exit_code == 0:
            budget = _INLINE_TASK_BYTES
            for path in (*task.outputs, *([task.depfile] if task.depfile else [])):
                full = os.path.join(scratch, path)
                if os.path.exists(full):
                    written[path] = _send_back(store, full, budget)
                    budget -= len(written[path][2] or b"")
        return completion, written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stage_input(store: Store, digest: str, data: bytes | None, destination: str) -> bool:
    """Write an input: its bytes if they came inline (checked first), else the store's blob."""
    if data is None:
        return store.fetch_blob(digest, destination) and digest_file(destination) == digest
    if digest_bytes(data) != digest:
        return False
    with open(destination, "wb") as stream:
        stream.write(data)
    return True


def _send_back(store: Store, path: str, budget: int) -> _Written:
    """An output as the client will restore it: inline if small enough and within
    `budget`, else put in the store. The digest is of the very bytes sent."""
    mode = os.stat(path).st_mode & 0o7777
    if os.path.getsize(path) <= min(_INLINE_FILE_BYTES, budget):
        data = _read_small(path, min(_INLINE_FILE_BYTES, budget))
        if data is not None:
            return digest_bytes(data), mode, data
    digest = digest_file(path)
    store.put_blob(digest, path)
    return digest, mode, None
