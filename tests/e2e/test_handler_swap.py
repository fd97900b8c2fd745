"""A handler registered again at runtime (here by a reload hook) answers on
sessions that were already open, on every transport: the short paths must
not keep calling the handler a session saw when it started."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from aether_swapsvc import Version
from e2e_support import start_service

import aether


@pytest.mark.parametrize("transport", ["memory", "socket", "mapping"])
def test_a_reloaded_handler_answers_open_sessions(runtime_dir: Path, transport: str) -> None:
    svc = start_service("aether_swapsvc:service", runtime_dir / "swap.ctl")
    try:
        with aether.Client(svc.socket_path, transport=transport, timeout=10,
                           schema=[__import__("aether_swapsvc")]) as client:
            assert client.call(Version()) == "first"
            assert client.call(Version()) == "first"  # the short path has it now
            assert svc.pid is not None
            os.kill(svc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            answer = client.call(Version())
            while answer == "first" and time.monotonic() < deadline:
                answer = client.call(Version())  # until the reload has run
            assert answer == "second"
    finally:
        svc.kill()
