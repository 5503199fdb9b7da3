"""Which stores a build uses, from flags, environment and rlmake.toml (in that order)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from typing import TYPE_CHECKING, Callable

from rlmake.cache.base import Store, StoreError
from rlmake.config import Config
from rlmake.errors import UsageError

if TYPE_CHECKING:
    from rlmake.cache.artifacts import ArtifactCache

LOCAL_STORE = "local cache"


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class CacheSettings:
    url: str | None = None              # the shared store: s3://bucket/prefix or a directory
    write: bool = False                 # write to the shared store (trusted CI only)
    endpoint_url: str | None = None
    local: bool = True                  # the project's own store in .rlmake/cache
    signing_key: bytes | None = None    # HMAC key for action records (RLMAKE_CACHE_KEY)

    @classmethod
    def resolve(cls, config: Config, url: str | None = None, write: bool | None = None,
                local: bool | None = None) -> "CacheSettings":
        env = os.environ
        key = env.get("RLMAKE_CACHE_KEY")
        typed = url or env.get("RLMAKE_CACHE")         # a path here means what the shell means
        if typed and "://" not in typed:
            typed = os.path.abspath(typed)
        return cls(
            url=typed or config.get("cache", "url"),      # rlmake.toml: relative to the project
            write=next(v for v in (write, _flag(env.get("RLMAKE_CACHE_WRITE")),
                                   config.get("cache", "write"), False) if v is not None),
            endpoint_url=env.get("RLMAKE_CACHE_ENDPOINT") or config.get("cache", "endpoint_url"),
            local=next(v for v in (local, config.get("cache", "local"), True) if v is not None),
            signing_key=key.encode() if key else None)

    def open(self, state_dir: str, project_dir: str,
             warn: Callable[[str], None]) -> "ArtifactCache | None":
        """The cache for one build; None when no store is enabled."""
        from rlmake.cache.artifacts import ArtifactCache, StoreUse
        from rlmake.cache.local import LocalStore

        stores: list[StoreUse] = []
        if self.local:
            own = LocalStore(os.path.join(state_dir, "cache"), LOCAL_STORE)
            stores.append(StoreUse(own, writable=True, shared=False))
        if self.url:
            shared = _shared_store(self.url, self.endpoint_url, project_dir)
            stores.append(StoreUse(shared, writable=self.write))
        if not stores:
            return None
        return ArtifactCache(stores, project_dir, warn, self.signing_key)


def _shared_store(url: str, endpoint_url: str | None, project_dir: str) -> Store:
    if url.startswith("s3://"):
        from rlmake.cache.s3 import S3Store

        try:
            return S3Store(url, endpoint_url)
        except StoreError as error:
            raise UsageError(str(error)) from None
    if "://" in url and not url.startswith("file://"):
        raise UsageError(f"unknown cache URL '{url}': use s3://bucket/prefix or a directory")
    from rlmake.cache.local import LocalStore

    path = url.removeprefix("file://")
    return LocalStore(os.path.join(project_dir, path), url)
