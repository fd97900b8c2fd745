"""SIGTERM while hostile and half-done sessions are connected (threat T30:
every path ends in a typed answer; docs/protocol.md §3 "a stopping service
sends ERROR(SHUTTING_DOWN)" and §4 "On SIGTERM the service cancels running
operations, finishes them (O4), sends GOODBYE(SHUTDOWN) and exits 0").
"""

from __future__ import annotations

import os
from pathlib import Path

from hostile_support import HASH_TREE, Svc
from rawpeer import Arena, RawPeer

from aether.schema import encode
from aether.wire import ErrorCode, GoodbyeReason, Status, messages as m


def test_sigterm_with_hostile_sessions_connected(tmp_path: Path, slow_tree: Path):
    os.chmod(tmp_path, 0o700)
    svc = Svc("guard", tmp_path / "guard.ctl")
    svc.start()
    arenas = [Arena() for _ in range(3)]
    peers: list[RawPeer] = []
    try:
        silent = RawPeer(svc.path)
        mid = RawPeer(svc.path)
        idle = RawPeer(svc.path)
        busy = RawPeer(svc.path)
        peers += [silent, mid, idle, busy]
        silent.hello()
        mid.hello()
        mid.send(m.ClientPid(os.getpid()))
        idle.handshake(arenas[0])
        busy.handshake(arenas[1])
        payload = encode({"root": str(slow_tree)})
        arenas[1].write_params(1, HASH_TREE, payload)
        busy.send(m.Execute(1, len(payload)))
        assert busy.expect(m.Started).status == Status.STARTED
        busy.expect(m.Progress)
        svc.wait_sessions(3)  # idle, busy, and the asking client

        assert svc.proc is not None
        assert svc.proc.stop(timeout=10.0) == 0  # SIGTERM; exit code 0

        silent.expect_error(ErrorCode.SHUTTING_DOWN)
        mid.expect_error(ErrorCode.SHUTTING_DOWN)
        assert idle.recv() == m.Goodbye(int(GoodbyeReason.SHUTDOWN), "service is stopping")
        assert isinstance(idle.recv(), m.ConnectionClosed)
        event = busy.recv()
        while isinstance(event, m.Progress):
            event = busy.recv()
        assert event == m.Done(1, int(Status.CANCELLED)), event
        header, _ = arenas[1].read_return()
        assert (header.op_id, header.status) == (1, Status.CANCELLED)  # own block, O4
        assert isinstance(busy.recv(), m.Goodbye)
        assert isinstance(busy.recv(), m.ConnectionClosed)
        assert arenas[2].holds_pattern()  # never registered, never touched
        assert all(a.canaries_intact() for a in arenas)
        log = svc.proc.stderr_text()
        assert "internal error" not in log and "Traceback" not in log, log
    finally:
        for peer in peers:
            peer.close()
        for a in arenas:
            a.close()
        svc.stop()
