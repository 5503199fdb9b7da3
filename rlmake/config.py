"""Settings that are not part of the build's meaning: `rlmake.toml` beside the Rulesfile.

```toml
[build]
hash = "fast"                      # or "content" (the default)
executor = "dask"                  # or "local" (the default)
scheduler = "tcp://10.0.0.5:8786"  # the Dask scheduler
file_mode = "auto"                 # how files reach Dask workers: auto, shared, staged

[cache]
url = "s3://bucket/prefix"         # a shared cache, read by every build
write = false                      # only trusted CI should write to it
endpoint_url = "http://127.0.0.1:9000"   # MinIO, Ceph, any S3 service
local = true                       # the local store in .rlmake/cache (default true)
local_max_size = "5G"              # its size cap, least recently used out first (default 2G)
```

Command-line flags win over environment variables, which win over this file
(docs/configuration.md says which flag and variable set each key).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from rlmake.errors import UsageError

CONFIG_NAME = "rlmake.toml"
# Each setting and the type its value must have.
_KNOWN: dict[str, dict[str, type]] = {
    "build": {"hash": str, "executor": str, "scheduler": str, "file_mode": str},
    "cache": {"url": str, "write": bool, "endpoint_url": str, "local": bool,
              "local_max_size": str}}


class Config(NamedTuple):
    values: dict[str, dict[str, Any]]

    def get(self, section: str, name: str, default: Any = None) -> Any:
        return self.values.get(section, {}).get(name, default)


def load_config(project_dir: str) -> Config:
    path = os.path.join(project_dir, CONFIG_NAME)
    if not os.path.exists(path):
        return Config({})
    import tomllib

    try:
        with open(path, "rb") as stream:
            values = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{CONFIG_NAME}: {error}") from None
    for section, names in values.items():
        if section not in _KNOWN or not isinstance(names, dict):
            raise UsageError(f"{CONFIG_NAME}: unknown section [{section}]; "
                             f"known: {', '.join(f'[{s}]' for s in _KNOWN)}")
        for name, value in names.items():
            _check_setting(section, name, value)
    return Config(values)


def _check_setting(section: str, name: str, value: Any) -> None:
    wanted = _KNOWN[section].get(name)
    if wanted is None:
        raise UsageError(f"{CONFIG_NAME}: unknown setting '{name}' in [{section}]; "
                         f"known: {', '.join(sorted(_KNOWN[section]))}")
    if not isinstance(value, wanted):
        kind = "true or false" if wanted is bool else "a string in quotes"
        raise UsageError(f"{CONFIG_NAME}: [{section}] {name} must be {kind}, not {value!r}")
