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
    """The checkout first, then what was there, then this interpreter's site-packages
    (for the processes started with -S, below)."""
    packages = [path for path in sys.path if path.endswith("-packages")]
    rest = [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if part and part != str(ROOT) and part not in packages]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *rest, *packages])


_put_checkout_first()

# The command that runs this checkout's rlmake. `-S`: without `site`, whose .pth files can
# run code at every start (an editable install's import hook, a CA bundle's: 60 ms of CPU
# a process on the CI machine, and the suite starts rlmake hundreds of times); the
# site-packages directories come from PYTHONPATH instead.
RLMAKE = (sys.executable, "-S", "-m", "rlmake")
