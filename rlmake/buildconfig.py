"""One build's settings, resolved once from flags, environment and rlmake.toml (in that
order of precedence), so that no layer below the CLI reads any of them again."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from rlmake.config import Config
from rlmake.errors import UsageError
from rlmake.executors import ExecutorSettings, worker_wait_from
from rlmake.hashing import HASH_MODES
from rlmake.model import BuildOptions

if TYPE_CHECKING:
    from rlmake.cache.settings import CacheSettings


class BuildConfig(NamedTuple):
    options: BuildOptions = BuildOptions()
    hash_mode: str | None = None    # None: the Rulesfile's var `rlmake_hash`, else content
    cache: "CacheSettings | None" = None     # None: no artifact store at all
    executor: ExecutorSettings = ExecutorSettings()
    wait: bool = True               # wait for another build of the project (not --no-wait)
    argv: tuple[str, ...] = ()      # the command line, as recorded

    def hash_mode_for(self, rulesfile_setting: str | None) -> str:
        mode = self.hash_mode or rulesfile_setting or "content"
        if mode not in HASH_MODES:
            raise UsageError(f"unknown hash mode '{mode}': use one of {', '.join(HASH_MODES)}")
        return mode


def resolve(config: Config, options: BuildOptions, *, hash_mode: str | None = None,
            cache_url: str | None = None, cache_write: bool | None = None,
            local_cache: bool | None = None, executor: str | None = None,
            scheduler: str | None = None, file_mode: str | None = None,
            wait: bool = True, verbose: bool = False, argv: tuple[str, ...] = ()
            ) -> BuildConfig:
    """Flags (None: not given), else environment, else rlmake.toml, else the defaults."""
    from rlmake.cache.settings import CacheSettings

    get = config.get
    kind = executor or get("build", "executor") or "local"
    return BuildConfig(
        options,
        hash_mode or os.environ.get("RLMAKE_HASH") or get("build", "hash"),
        _writable_only_with_a_store(CacheSettings.resolve(config, cache_url, cache_write,
                                                          local_cache)),
        ExecutorSettings.checked(kind,
                         scheduler if scheduler is not None else get("build", "scheduler"),
                         file_mode or get("build", "file_mode") or "auto",
                         worker_wait_from(os.environ.get("RLMAKE_DASK_WORKER_WAIT")
                                          if kind == "dask" else None),
                         cluster_logs=verbose),
        wait, argv)


def _writable_only_with_a_store(cache: "CacheSettings") -> "CacheSettings":
    """Asking to write a shared cache that is not named is a mistake, not a no-op: the
    CI job that meant to fill the cache would pass and fill nothing."""
    if cache.write and not cache.url:
        raise UsageError("--cache-write (or RLMAKE_CACHE_WRITE, or [cache] write in "
                         "rlmake.toml) asks to write a shared cache, but none is named: "
                         "pass --cache s3://bucket/prefix or --cache DIR (or set RLMAKE_CACHE)")
    return cache
