"""The client's side of the mapping transport: auto's fallback order and a
service that hands over descriptors it should not."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from e2e_support import start_service

import aether
from aether import osapi, wire
from aether.errors import HandshakeError
from aether.wire import Transport, messages as m, rings


def test_auto_prefers_memory_then_mapping(runtime_dir: Path) -> None:
    svc = start_service("aether_testsvc:service", runtime_dir / "nomem.ctl",
                        "--no-memory-transport")
    try:
        steps: list[tuple[str, str]] = []
        with aether.Client(svc.socket_path, transport="auto",
                           on_step=lambda s, t: steps.append((s, t))) as client:
            assert client.transport == "mapping"
            assert client.echo(b"fallback") == b"fallback"
        assert any(s == "mapping-mode" and "memory transport refused" in t for s, t in steps)
        assert "memory" in client.fallback_reason
    finally:
        svc.kill()


def _fake_service(path: Path, fds_for: str) -> threading.Thread:
    """A one-shot service that offers MAPPING and answers MAP_MODE with bad descriptors."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        proto = wire.ServiceProtocol(fingerprint=0, transports=Transport.MAPPING)
        conn.send(proto.hello())
        proto.receive(conn.recv(100))  # MAP_MODE
        ring = 4096
        size = rings.region_size(ring)
        opened: list[int] = []
        if fds_for == "pipe":
            opened = [*os.pipe(), osapi.eventfd_create()]
        elif fds_for == "unsealed":
            fd = os.memfd_create("x", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.ftruncate(fd, size)
            opened = [fd, osapi.eventfd_create(), osapi.eventfd_create()]
        elif fds_for == "two":
            opened = [osapi.memfd_create("x", size), osapi.eventfd_create()]
        elif fds_for == "garbage-region":
            fd = osapi.memfd_create("x", size)
            osapi.add_seals(fd, osapi.F_SEAL_SEAL)
            os.pwrite(fd, b"\xff" * 64, 0)
            opened = [fd, osapi.eventfd_create(), osapi.eventfd_create()]
        osapi.send_fds(conn, proto.send(m.MapReady(ring, size)), opened)
        for fd in opened:
            os.close(fd)
        conn.recv(100)  # the client's TEST_VERIFIED(error) or its close
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("fds_for", ["pipe", "unsealed", "two", "garbage-region"])
def test_bad_descriptors_from_the_service_are_refused(runtime_dir: Path, fds_for: str) -> None:
    path = runtime_dir / "fake.ctl"
    before = len(os.listdir("/proc/self/fd"))
    thread = _fake_service(path, fds_for)
    with pytest.raises(HandshakeError) as info:
        aether.Client(path, transport="mapping", timeout=5)
    assert info.value.reason == "protocol"
    thread.join(10)
    assert len(os.listdir("/proc/self/fd")) <= before  # nothing received was kept
