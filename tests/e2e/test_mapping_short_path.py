"""The mapping transport's short paths end every call as the general path
would: each test takes one way off them (docs/protocol.md §10.3)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import shortpath_svc as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import aether
from aether.errors import (
    AetherTimeoutError,
    AuthorizationError,
    BusyResourceError,
    OperationError,
)
from aether.testing import ServiceProcess
from aether.wire import Status


@pytest.fixture(scope="module")
def svc(shortpath_svc: ServiceProcess) -> ServiceProcess:
    return shortpath_svc


@pytest.fixture
def client(svc: ServiceProcess) -> Iterator[aether.Client]:
    with aether.Client(svc.socket_path, schema=sp, transport="mapping") as c:
        assert c.transport == "mapping"
        yield c


def test_quick_results_come_back_typed_and_in_order(client: aether.Client) -> None:
    for i in range(2000):  # wraps both rings many times
        assert client.call(sp.Add(a=i, b=1)) == i + 1


def test_each_inline_operation_gets_its_own_context(client: aether.Client) -> None:
    """Contexts are made ahead of their operations; a handler that keeps one
    must still see it as its own operation's, never reused or rewritten."""
    first = client.call(sp.Context())
    for i in range(1, 50):
        before = time.monotonic_ns()
        op_id, named, started_ns, unchanged, distinct = client.call(sp.Context())
        assert op_id == first[0] + i
        assert named == 1
        assert before <= started_ns <= time.monotonic_ns()  # when it started, not when made
        assert unchanged == 1
        assert distinct == first[4] + i


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(-(2**62), 2**62), st.integers(-(2**62), 2**62))
def test_any_inline_result(client: aether.Client, a: int, b: int) -> None:
    assert client.call(sp.Add(a=a, b=b)) == a + b


def test_inline_failure_carries_message_and_details(client: aether.Client) -> None:
    with pytest.raises(OperationError) as info:
        client.call(sp.Fail(message="inline disk on fire"))
    assert info.value.status == Status.FAILED
    assert info.value.message == "inline disk on fire"
    assert info.value.details == {"code": 7}
    assert client.call(sp.Add(a=1, b=2)) == 3


def test_inline_cancelled_is_cancelled(client: aether.Client) -> None:
    with pytest.raises(OperationError) as info:
        client.call(sp.GivesUp())
    assert info.value.status == Status.CANCELLED
    assert client.call(sp.Add(a=1, b=2)) == 3


def test_unencodable_inline_result_is_failed(client: aether.Client) -> None:
    with pytest.raises(OperationError) as info:
        client.call(sp.Unencodable())
    assert info.value.status == Status.FAILED
    assert "not encodable" in info.value.message
    assert client.call(sp.Add(a=1, b=2)) == 3


def test_policy_still_applies_to_inline_operations(client: aether.Client) -> None:
    with pytest.raises(AuthorizationError) as info:
        client.call(sp.Denied())
    assert info.value.status == Status.REJECTED_UNAUTHORIZED
    assert client.call(sp.Add(a=1, b=2)) == 3


def test_inline_result_too_large_for_the_reply_ring(svc: ServiceProcess) -> None:
    with aether.Client(svc.socket_path, schema=sp, transport="mapping",
                       block_size=64 * 1024) as client:
        with pytest.raises(OperationError) as info:
            client.call(sp.Big(size=300_000))
        assert info.value.status == Status.RESULT_TOO_LARGE
        client.resize_blocks(retn_size=info.value.details["needed"])
        assert client.call(sp.Big(size=300_000)) == b"\xab" * 300_000


def test_big_inline_results_through_the_trim_path(client: aether.Client) -> None:
    client.resize_blocks(retn_size=4 * 1024 * 1024)
    for size in (2 * 1024 * 1024, 10, 3 * 1024 * 1024):
        assert client.call(sp.Big(size=size)) == b"\xab" * size


def test_progress_frames_before_the_result(client: aether.Client) -> None:
    assert client.call(sp.Progress(steps=4)) == 4  # no callback: frames skipped
    seen: list[int] = []
    assert client.call(sp.Progress(steps=4), on_progress=lambda op: seen.append(op.permille)) == 4
    assert seen and seen[-1] == 1000


def test_reply_later_than_the_spin(client: aether.Client) -> None:
    assert client.call(sp.Nap(delay=0.05)) == "rested"
    assert client.call(sp.Add(a=2, b=2)) == 4


def test_timeout_while_the_reply_is_late(client: aether.Client) -> None:
    with pytest.raises(AetherTimeoutError):
        client.call(sp.Nap(delay=2.0), timeout=0.05)
    # Like the general path, the operation is still the session's: one at a time.
    with pytest.raises(BusyResourceError):
        client.call(sp.Add(a=1, b=1))
