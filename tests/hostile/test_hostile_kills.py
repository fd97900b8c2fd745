"""Clients killed (SIGKILL) in the middle of things (threats T4, T26, T30;
docs/protocol.md H3-H6 and O1-O4; "a session ends when the connecting
process exits").

Each client is a separate process (peers/stage_client.py) that stops at a
given step and waits to be killed. Afterwards: the service keeps serving,
aether.status shows the session count back to its baseline within a second,
and the service's threads and descriptors are back to idle (no leaked
session thread, pidfd, socket or /proc/<pid>/mem fd).
"""

from __future__ import annotations

import os
import time

import pytest

from aether.testing import wait_until


def _service_holds_mem_of(svc, pid: int) -> bool:
    want = f"/proc/{pid}/mem"
    for fd in os.listdir(f"/proc/{svc.pid}/fd"):
        try:
            if os.readlink(f"/proc/{svc.pid}/fd/{fd}") == want:
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("stage", ["hello", "client_pid", "addr_retn", "op"])
def test_client_killed_mid_way(svc, spawn_peer, slow_tree, stage):
    baseline = svc.status().sessions  # the asking client's own session
    peer = spawn_peer("stage_client.py", str(svc.path), stage, str(slow_tree))
    info = peer.read(10.0)
    assert info["stage"] == stage
    if stage in ("client_pid", "addr_retn"):
        # H3 was processed: the service opened the client's memory (the event
        # that makes a kill now exercise the half-built memory session).
        wait_until(lambda: _service_holds_mem_of(svc, info["pid"]), 2.0,
                   "the service to open the client's memory", watch_pid=svc.pid)
    if stage == "op":
        st = svc.status()
        assert st.sessions == baseline + 1
        mine = [s for s in st.session_list if s.pid == info["pid"]]
        assert mine and mine[0].running == "guard.hash_tree", st.session_list
    peer.kill()  # SIGKILL, by pid, and reaped
    killed_at = time.monotonic()
    st = svc.wait_sessions(baseline, timeout=1.0)
    assert time.monotonic() - killed_at < 1.5
    assert info["pid"] not in [s.pid for s in st.session_list]
    wait_until(lambda: not _service_holds_mem_of(svc, info["pid"]), 1.0,
               "the service to close the dead client's memory fd", watch_pid=svc.pid)
    svc.wait_footprint()  # the worker thread of hash_tree ended too
    svc.assert_serving()
