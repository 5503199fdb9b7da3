"""Which stores a build uses, from flags, environment and rlmake.toml (in that order)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, NamedTuple

from rlmake.cache.base import StoreError
from rlmake.config import Config
from rlmake.errors import UsageError

if TYPE_CHECKING:
    from rlmake.cache.artifacts import ArtifactCache
    from rlmake.cache.housekeeping import Tended
    from rlmake.cache.local import LocalStore
    from rlmake.cache.s3 import S3Store

LOCAL_STORE = "local cache"
DEFAULT_MAX_BYTES = 2 << 30     # 2 GiB: see docs/decisions.md, "The local store's size cap"
KNOWN_SCHEMES = ("s3://", "file://")
# What reads as a URL scheme (RFC 3986, leniently): `s3:/b`, `gs://b`, `file:x`, `a:b`.
_SCHEME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_ACCEPTED = "use s3://bucket/prefix, file:///path or a directory"


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes", "on")


class CacheSettings(NamedTuple):
    url: str | None = None              # the shared store: s3://bucket/prefix or a directory
    write: bool = False                 # write to the shared store (trusted CI only)
    endpoint_url: str | None = None
    local: bool = True                  # the project's own store in .rlmake/cache
    signing_key: bytes | None = None    # HMAC key for action records (RLMAKE_CACHE_KEY)
    local_max_size: int = DEFAULT_MAX_BYTES     # the size cap of .rlmake/cache (cap.py)

    @classmethod
    def resolve(cls, config: Config, url: str | None = None, write: bool | None = None,
                local: bool | None = None) -> "CacheSettings":
        env = os.environ
        key = env.get("RLMAKE_CACHE_KEY")
        typed = (checked_url(url, "--cache") if url
                 else checked_url(env.get("RLMAKE_CACHE"), "RLMAKE_CACHE"))
        if typed and "://" not in typed:
            typed = os.path.abspath(typed)              # a path here means what the shell means
        return cls(
            url=typed or checked_url(config.get("cache", "url"), "[cache] url in rlmake.toml"),
            write=next(v for v in (write, _flag(env.get("RLMAKE_CACHE_WRITE")),
                                   config.get("cache", "write"), False) if v is not None),
            endpoint_url=env.get("RLMAKE_CACHE_ENDPOINT") or config.get("cache", "endpoint_url"),
            local=next(v for v in (local, config.get("cache", "local"), True) if v is not None),
            signing_key=key.encode() if key else None,
            local_max_size=_max_size(config.get("cache", "local_max_size")))

    def open(self, state_dir: str, project_dir: str, warn: Callable[[str], None],
             execution: str | None = None) -> "ArtifactCache | None":
        """The cache for build `execution`; None when no store is enabled."""
        from rlmake.cache.artifacts import ArtifactCache, StoreUse
        from rlmake.cache.projectstore import ProjectStore

        stores: list[StoreUse] = []
        if self.local:
            own = ProjectStore(os.path.join(state_dir, "cache"), LOCAL_STORE,
                               max_bytes=self.local_max_size)
            stores.append(StoreUse(own, writable=True, shared=False))
        if self.url:
            shared = _shared_store(self.url, self.endpoint_url, project_dir)
            stores.append(StoreUse(shared, writable=self.write))
        if not stores:
            return None
        return ArtifactCache(stores, project_dir, warn, self.signing_key, execution)

    def shared_store(self, project_dir: str) -> "Tended | None":
        """The shared store `url` names, for `cache stats` and `cache gc`; None if none."""
        return _shared_store(self.url, self.endpoint_url, project_dir) if self.url else None


def _max_size(text: str | None) -> int:
    """`[cache] local_max_size` in bytes (500M, 5G); the default when it is not set."""
    if text is None:
        return DEFAULT_MAX_BYTES
    from rlmake.cache.housekeeping import parse_size

    try:
        return parse_size(text)
    except UsageError as error:
        raise UsageError(f"rlmake.toml: [cache] local_max_size: {error}") from None


def checked_url(url, origin: str) -> str | None:
    """`url` if it is an s3:// or file:// URL or a directory; anything else that starts
    like a URL (`s3:/bucket`, `gs://bucket`) is a usage error, before a directory of that
    name could be made."""
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise UsageError(f"{origin}: the cache URL must be a string, not {url!r}")
    if url.startswith("s3://") and not url.removeprefix("s3://").split("/", 1)[0]:
        raise UsageError(f"{origin}: cache URL '{url}' names no bucket: {_ACCEPTED}")
    if url.startswith("file://") and not url.removeprefix("file://").strip("/"):
        raise UsageError(f"{origin}: cache URL '{url}' names no directory: {_ACCEPTED}")
    if url.startswith(KNOWN_SCHEMES):
        return url
    if _looks_like_a_scheme(url):
        raise UsageError(f"{origin}: '{url}' is not a cache URL rlmake knows: {_ACCEPTED} "
                         "(write ./NAME for a directory whose name has a colon)")
    return url


def _looks_like_a_scheme(url: str) -> bool:
    """Whether `url` starts with a scheme and its colon (no `re`: every build checks
    the settings, few name a cache)."""
    scheme, colon, _ = url.partition(":")
    return bool(colon and scheme) and all(char in _SCHEME_CHARACTERS for char in scheme)


def _shared_store(url: str, endpoint_url: str | None, project_dir: str
                  ) -> "LocalStore | S3Store":
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
