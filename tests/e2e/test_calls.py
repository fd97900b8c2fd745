"""End-to-end: a real service process, real clients, the memory transport.

Step numbers refer to docs/protocol.md.
"""

from __future__ import annotations

import os
import threading
import time

import aether_testsvc as ts
import pytest

import aether
from aether.errors import (
    BusyResourceError,
    HandshakeError,
    OperationError,
    OutcomeUnknownError,
    SchemaError,
)
from aether.schema import builtins as b
from aether.wire import Status


def connect(svc, **kw) -> aether.Client:
    return aether.Client(svc.socket_path, schema=ts, **kw)


def test_echo_describe_status_over_memory_transport(testsvc):
    with connect(testsvc, transport="memory") as client:
        assert client.transport == "memory"
        assert client.echo(b"seed 000") == b"seed 000"
        desc = client.describe()
        names = {op.name for op in desc.operations}
        assert {"aether.describe", "aether.status", "aether.echo", "test.slow"} <= names
        assert desc.fingerprint == client.registry.fingerprint()
        st = client.status()
        assert st.sessions == 1 and st.session_list[0].transport == "memory"
        assert st.session_list[0].pid == os.getpid()


def test_requests_and_results_either_side_of_one_page(testsvc):
    """Header and payload within a block's first page go in one write, larger
    ones as payload then header (docs/protocol.md §5): every size across the
    boundary, both ways, comes back whole, on the short and general paths."""
    page = os.sysconf("SC_PAGE_SIZE")
    with connect(testsvc, transport="memory") as client:
        for n in range(page - 64, page + 16):
            data = bytes((i * 7 + n) & 0xFF for i in range(n))
            assert client.echo(data) == data
            assert client.call(b.Echo(data=data), on_progress=lambda op: None) == data


def test_handshake_steps_are_reported_in_seed_order(testsvc):
    seen: list[str] = []
    with connect(testsvc, transport="memory", on_step=lambda s, t: seen.append(s)):
        pass
    expected = ["connected", "service-verified", "hello", "blocks-allocated", "pattern-written",
                "pid-sent", "addresses-sent", "service-read-pattern", "zeros-verified", "ready"]
    assert [s for s in seen if s in expected] == expected


def test_verified_caller_is_the_kernel_peer(testsvc):
    with connect(testsvc) as client:
        pid, uid, gid = client.call(ts.WhoAmI())
    assert (pid, uid, gid) == (os.getpid(), os.geteuid(), os.getegid())


def test_progress_and_result(testsvc):
    seen: list[int] = []
    with connect(testsvc) as client:
        result = client.call(ts.Slow(steps=20, delay=0.005),
                             on_progress=lambda op: seen.append(op.permille))
    assert result == 20
    assert seen and seen[-1] == 1000
    assert seen == sorted(seen)


def test_cancel_a_running_operation(testsvc):
    """protocol.md step O5: CANCEL ends the op as CANCELLED."""
    with connect(testsvc) as client:
        started = threading.Event()
        op = client.start(ts.Slow(steps=10_000, delay=0.01),
                          on_progress=lambda o: started.set())
        canceller = threading.Thread(target=lambda: (started.wait(10), op.cancel()))
        canceller.start()
        with pytest.raises(OperationError) as info:
            op.wait(timeout=20)
        canceller.join()
        assert info.value.status == Status.CANCELLED
        # the session is usable afterwards
        assert client.echo(b"after cancel") == b"after cancel"


def test_one_operation_at_a_time_per_session(testsvc):
    with connect(testsvc) as client:
        op = client.start(ts.Slow(steps=5, delay=0.01))
        with pytest.raises(BusyResourceError):
            client.start(b.Echo(data=b"x"))
        assert op.wait(10) == 5
        assert client.echo(b"y") == b"y"


def test_failed_operation_carries_message_and_details(testsvc):
    with connect(testsvc) as client, pytest.raises(OperationError) as info:
        client.call(ts.Fail(message="disk on fire"))
    assert info.value.status == Status.FAILED
    assert info.value.message == "disk on fire"
    assert info.value.details == {"code": 42}


def test_bad_params_rejected_with_the_field(testsvc):
    with aether.Client(testsvc.socket_path) as client:  # schema-less: sends plain values
        with pytest.raises(OperationError) as info:
            client.call_by_name("test.slow", {"steps": "many"})
    assert info.value.status == Status.REJECTED_BAD_PARAMS
    assert "$.steps" in info.value.message


def test_unknown_operation_name(testsvc):
    with aether.Client(testsvc.socket_path) as client, pytest.raises(SchemaError):
        client.call_by_name("test.nope", {})


def test_privileged_operation_allowed_for_root_service_owner(testsvc):
    with connect(testsvc) as client:
        assert client.call(ts.Privileged()) == f"hello uid {os.geteuid()}"


def test_result_too_large_then_larger_blocks(testsvc):
    """protocol.md step O4/O6: RESULT_TOO_LARGE names the size needed."""
    with connect(testsvc, block_size=64 * 1024) as client:
        with pytest.raises(OperationError) as info:
            client.call(ts.BigResult(size=200_000))
        assert info.value.status == Status.RESULT_TOO_LARGE
        needed = info.value.details["needed"]
        assert needed >= 200_000
        client.resize_blocks(retn_size=needed)
        assert client.call(ts.BigResult(size=200_000)) == bytes(200_000)


def test_large_parameters_grow_the_parameter_block(testsvc):
    data = os.urandom(3 * 1024 * 1024)
    with connect(testsvc, block_size=64 * 1024) as client:
        client.resize_blocks(retn_size=4 * 1024 * 1024)
        assert client.echo(data) == data
        assert client.memory is not None and client.memory.param.size > 3 * 1024 * 1024


def test_socket_transport_and_auto(testsvc):
    with connect(testsvc, transport="socket") as client:
        assert client.transport == "socket"
        assert client.echo(b"inline") == b"inline"
        assert client.call(ts.Slow(steps=3, delay=0.001)) == 3
    with connect(testsvc, transport="auto") as client:
        assert client.transport == "memory"


def test_schema_fingerprint_mismatch_is_a_handshake_error(testsvc, runtime_dir):
    import types

    other = types.ModuleType("other_schema")

    @aether.operation(code=0x0F01, name="test.slow", result=str)  # result type differs
    class Slow(aether.Params, frozen=True, kw_only=True):
        steps: int = 1

    other.Slow = Slow  # type: ignore[attr-defined]
    with pytest.raises(HandshakeError) as info:
        aether.Client(testsvc.socket_path, schema=other)
    assert info.value.reason == "schema-mismatch"
    assert info.value.step == "H2"


def test_slow_operation_does_not_delay_another_client(testsvc):
    with connect(testsvc) as slow_client, connect(testsvc) as fast_client:
        op = slow_client.start(ts.Slow(steps=300, delay=0.01))
        t0 = time.monotonic()
        for _ in range(20):
            assert fast_client.echo(b"quick") == b"quick"
        assert time.monotonic() - t0 < 1.0
        assert not op.finished
        op.cancel()
        with pytest.raises(OperationError):
            op.wait(10)


class _LongOperation:
    """A long ``test.slow`` op pumped by a thread that records how it ended."""

    def __init__(self, client: aether.Client) -> None:
        self.started = threading.Event()
        self.errors: list[BaseException] = []
        self.results: list[object] = []
        self.op = client.start(ts.Slow(steps=10_000, delay=0.01),
                               on_progress=lambda o: self.started.set())
        self.thread = threading.Thread(target=self._wait)
        self.thread.start()

    def _wait(self) -> None:
        try:
            self.results.append(self.op.wait(30))
        except BaseException as exc:  # recorded for the assertions
            self.errors.append(exc)

    def join(self) -> BaseException:
        self.thread.join(10)
        assert not self.thread.is_alive()
        assert not self.results, "the operation must not report success"
        assert len(self.errors) == 1
        return self.errors[0]


def test_sigterm_cancels_running_op_and_exits_zero(testsvc):
    client = connect(testsvc)
    long_op = _LongOperation(client)
    assert long_op.started.wait(10)
    assert testsvc.stop() == 0
    exc = long_op.join()
    assert isinstance(exc, OperationError)
    assert exc.status == Status.CANCELLED or isinstance(exc, OutcomeUnknownError)
    client.close()


def test_service_killed_mid_operation_outcome_unknown(testsvc):
    client = connect(testsvc)
    long_op = _LongOperation(client)
    assert long_op.started.wait(10)
    testsvc.kill()
    exc = long_op.join()
    assert isinstance(exc, OutcomeUnknownError)
    assert "unknown" in str(exc)
    client.close()
