"""Waiting for a condition that has no event of its own (a thread count in
/proc, a queue draining), bounded by a deadline.

Between checks the caller waits on the process it is watching (its pidfd),
so a watched process that dies ends the wait at once instead of at the
deadline. Never a fixed sleep used as synchronisation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from aether import osapi

INTERVAL = 0.005


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *,
               watch_pid: int) -> None:
    """Return once ``predicate()`` holds; AssertionError after ``timeout`` s,
    or as soon as ``watch_pid`` exits with the condition still false."""
    deadline = time.monotonic() + timeout
    pidfd = osapi.pidfd_open(watch_pid)
    try:
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            if osapi.wait_pidfd(pidfd, min(INTERVAL, remaining)) and not predicate():
                raise AssertionError(f"process {watch_pid} exited while waiting for {what}")
    finally:
        os.close(pidfd)
