"""Limits and edge cases found in review: cancel after completion, the socket
transport's datagram bound, failed re-registration, concurrent use of one
session, descriptor exhaustion."""

from __future__ import annotations

import os

import aether_testsvc as ts
import pytest
from e2e_support import E2E

import aether
from aether.errors import (
    ClosedResourceError,
    HandshakeError,
    LimitsExceededError,
    OperationError,
)
from aether.testing import ServiceProcess
from aether.testing.waiting import wait_until
from aether.wire import Status


def connect(svc, **kw) -> aether.Client:
    return aether.Client(svc.socket_path, schema=ts, **kw)


def test_operation_that_completed_is_ok_even_if_cancel_arrived(testsvc):
    """A handler that returns has taken effect: CANCELLED would invite a retry."""
    with connect(testsvc) as client:
        op = client.start(ts.Stubborn(delay=0.3))
        op.cancel()
        assert op.wait(10) == "committed"


def test_socket_transport_bounds_payloads_cleanly(testsvc):
    with connect(testsvc, transport="socket") as client:
        limit = client.proto.max_payload
        assert 0 < limit < 16 * 1024 * 1024
        with pytest.raises(LimitsExceededError):
            client.echo(bytes(limit + 1))
        with pytest.raises(OperationError) as info:
            client.call(ts.BigResult(size=limit + 1))
        assert info.value.status == Status.RESULT_TOO_LARGE
        assert client.echo(b"still usable") == b"still usable"


def test_refused_reregistration_closes_the_client(testsvc):
    client = connect(testsvc)
    with pytest.raises(HandshakeError) as info:
        client.resize_blocks(retn_size=64 * 1024 * 1024)
    assert info.value.reason == "block-too-large"
    with pytest.raises(ClosedResourceError):
        client.echo(b"x")
    client.close()


def test_descriptor_exhaustion_refuses_new_sessions_and_keeps_serving(runtime_dir):
    env = {"PYTHONPATH": str(E2E), "AETHER_RUNTIME_DIR": str(runtime_dir)}
    svc = ServiceProcess("aether_testsvc:service", runtime_dir / "fd.ctl", env=env,
                         max_fds=96).start()
    clients: list[aether.Client] = []

    def service_fds() -> int:
        return len(os.listdir(f"/proc/{svc.pid}/fd"))

    idle_fds = service_fds()
    try:
        refused = None
        for _ in range(40):
            try:
                clients.append(connect(svc))
            except (HandshakeError, aether.ConnectError) as exc:
                refused = exc
                break
        assert refused is not None, "the service never reached its descriptor budget"
        assert "limits" in str(refused) or "resources" in str(refused)
        assert svc.proc is not None and svc.proc.poll() is None
        for c in clients:
            c.close()
        clients.clear()
        # A session's descriptors go when its thread has seen the hang-up,
        # a moment after close() returns here.
        wait_until(lambda: service_fds() <= idle_fds, 10, "the sessions' descriptors to go",
                   watch_pid=svc.pid)
        with connect(svc) as fresh:
            assert fresh.echo(b"back") == b"back"
    finally:
        for c in clients:
            c.close()
        svc.kill()
