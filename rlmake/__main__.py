"""The `rlmake` command (and `python -m rlmake`).

A plain `rlmake build`, the command run most (on every editor save), runs without
loading click, whose import is most of a small project's no-op: nothing on its command
line needs parsing. Anything else goes through the click commands in cli.py; both run
the same `build_command.run_build`.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:] == ["build"] and "_RLMAKE_COMPLETE" not in os.environ:
        from rlmake.build_command import BuildFlags, run_build
        from rlmake.guard import exit_status, say

        sys.exit(exit_status(lambda: run_build(".", None, (), BuildFlags(), say)))
    from rlmake.cli import main as click_main

    click_main(prog_name="rlmake")


if __name__ == "__main__":
    main()
