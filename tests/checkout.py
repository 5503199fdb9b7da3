"""The rlmake under test: this checkout's package, run by the interpreter running pytest.

Never the first `rlmake` on PATH, which may be another install or another worktree.
Every subprocess a test starts inherits PYTHONPATH with this checkout first, so
`python -m rlmake`, Dask workers and nested builds all import the code under test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _put_checkout_first() -> None:
    rest = [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if part and part != str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *rest])


_put_checkout_first()

# The command that runs this checkout's rlmake.
RLMAKE = (sys.executable, "-m", "rlmake")
