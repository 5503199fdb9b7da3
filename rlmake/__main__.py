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
    if sys.stdin is None or sys.stdout is None or sys.stderr is None:
        _open_closed_streams()
    # First, and small: a Ctrl-C while the rest is imported is then an interrupt like
    # any other ("rlmake: interrupted", 130), not Python's traceback; and one while
    # this very import runs (it takes signal and typing) is answered the same way.
    try:
        from rlmake.guard import exit_status
    except KeyboardInterrupt:
        sys.stderr.write("rlmake: interrupted\n")
        sys.exit(130)                       # errors.Interrupted.exit_code, not yet imported

    if sys.argv[1:] == ["build"] and "_RLMAKE_COMPLETE" not in os.environ:
        sys.exit(exit_status(_plain_build))
    imported: list = []
    status = exit_status(lambda: imported.append(_click_main()))
    if status:
        sys.exit(status)
    imported[0](prog_name="rlmake")


def _open_closed_streams() -> None:
    """Whoever started rlmake closed a standard descriptor (`rlmake build >&-`); Python
    then has no stream for it. Each becomes /dev/null, as the shells and make do: the
    output has nowhere to go, and the descriptor is not handed to the next file rlmake
    opens (the state database), which its own messages would then be written into."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is None:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))


def _plain_build() -> None:
    from rlmake.build_command import BuildFlags, run_build
    from rlmake.guard import say

    run_build(".", None, (), BuildFlags(), say)


def _click_main():
    from rlmake.cli import main as click_main

    return click_main


if __name__ == "__main__":
    main()
