"""rlmake's helper threads (the remote cache's lookup and upload pools) block SIGINT,
SIGTERM and SIGHUP, so that the kernel hands an interrupt to the main thread. A helper
that took one would run Python's handler on the main thread at once, even while that
thread holds interrupts to start a command: the command could be left unknown to the
cancel and to the record of running commands."""

from __future__ import annotations

import signal
import sys

import pytest

from rlmake.cache.artifacts import ArtifactCache
from rlmake.errors import INTERRUPT_SIGNALS
from rlmake.executors.caching import _lookup_pool

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal masks")


def blocked_here() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, ()))


def test_the_lookup_pool_threads_hold_interrupts():
    pool = _lookup_pool(2)
    try:
        masks = [pool.submit(blocked_here).result(timeout=30) for _ in range(4)]
    finally:
        pool.shutdown(wait=True)
    assert all(set(INTERRUPT_SIGNALS) <= mask for mask in masks)
    assert not set(INTERRUPT_SIGNALS) & blocked_here()     # the caller's own mask untouched


def test_the_upload_pool_threads_hold_interrupts(tmp_path):
    cache = ArtifactCache([], str(tmp_path), lambda text: None)
    masks: list[set[int]] = []
    cache._upload(lambda: masks.append(blocked_here()))
    cache.close()
    assert masks and set(INTERRUPT_SIGNALS) <= masks[0]
