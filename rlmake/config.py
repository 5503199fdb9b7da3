"""Settings that are not part of the build's meaning: `rlmake.toml` beside the Rulesfile.

```toml
[build]
hash = "fast"                      # or "content" (the default)

[cache]
url = "s3://bucket/prefix"         # a shared cache, read by every build
write = false                      # only trusted CI should write to it
endpoint_url = "http://127.0.0.1:9000"   # MinIO, Ceph, any S3 service
local = true                       # the local store in .rlmake/cache (default true)
```

Command-line flags win over environment variables, which win over this file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rlmake.errors import UsageError

CONFIG_NAME = "rlmake.toml"
_KNOWN = {"build": {"hash", "executor", "scheduler", "file_mode"},
          "cache": {"url", "write", "endpoint_url", "local"}}


@dataclass(frozen=True)
class Config:
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
        for name in names:
            if name not in _KNOWN[section]:
                raise UsageError(f"{CONFIG_NAME}: unknown setting '{name}' in [{section}]; "
                                 f"known: {', '.join(sorted(_KNOWN[section]))}")
    return Config(values)
