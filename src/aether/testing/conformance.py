"""The transport-independent behaviour of a session, written once and run
over every transport, so that no transport can silently lag behind.

A test module subclasses :class:`TransportConformance`, sets ``schema`` to a
schema module with the test service's operations (``test.slow``,
``test.fail``, ``test.big_result``, ``test.whoami``, ``test.stubborn``,
``test.privileged``; see ``tests/e2e/aether_testsvc.py``), and provides
two pytest fixtures: ``service`` (a running :class:`ServiceProcess` of that
service) and ``transport`` (parametrized over :data:`TRANSPORTS`). Every
``test_*`` method then runs once per transport, against real processes.

This module imports pytest; it is not imported by ``aether.testing``.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import types
from typing import Any, ClassVar

import pytest

from aether.client import Client
from aether.errors import (
    AetherTimeoutError,
    BusyResourceError,
    HandshakeError,
    LimitsExceededError,
    OperationError,
    OutcomeUnknownError,
    SchemaError,
)
from aether.schema import builtins as b
from aether.wire import Status

from .child import ScriptedChild
from .process import ServiceProcess
from .waiting import wait_until

TRANSPORTS: tuple[str, ...] = ("memory", "mapping", "socket")

# A client in its own process that starts test.slow and reports it started.
_CHILD_CLIENT = """
import sys, aether
client = aether.Client(sys.argv[1], transport=sys.argv[2])
op = client.start_by_name("test.slow", {"steps": 100000, "delay": 0.01},
                          on_progress=lambda o: None)
print("started", client.transport, flush=True)
op.wait()
"""


class TransportConformance:
    """Every transport must pass each of these (see the module docstring)."""

    schema: ClassVar[types.ModuleType]

    # -- helpers -----------------------------------------------------------------
    def connect(self, service: ServiceProcess, transport: str, **kw: Any) -> Client:
        client = Client(service.socket_path, schema=self.schema, transport=transport, **kw)
        assert client.transport == transport
        return client

    def ops(self) -> Any:
        return self.schema

    # -- built-ins -----------------------------------------------------------------
    def test_builtins(self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport) as client:
            assert client.echo(b"seed 000") == b"seed 000"
            assert client.echo(b"") == b""
            desc = client.describe()
            names = {op.name for op in desc.operations}
            assert {"aether.describe", "aether.status", "aether.echo", "aether.sink"} <= names
            assert desc.fingerprint == client.registry.fingerprint()
            st = client.status()
            assert st.sessions == 1
            assert st.session_list[0].transport == transport
            assert st.session_list[0].pid == os.getpid()
            assert client.call(b.Sink(data=bytes(100_000))) == 100_000
            assert client.call_by_name("aether.echo", {"data": b"by name"}) == b"by name"

    def test_echo_many_sizes_in_a_row(self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport) as client:
            for size in (0, 1, 7, 8, 31, 32, 33, 4095, 4096, 20_000, 1, 60_000, 3):
                data = os.urandom(size)
                assert client.echo(data) == data
            for i in range(500):  # long enough to wrap every ring many times
                assert client.echo(b"%d" % i) == b"%d" % i

    def test_verified_caller_is_the_kernel_peer(self, service: ServiceProcess,
                                                transport: str) -> None:
        with self.connect(service, transport) as client:
            assert client.call(self.ops().WhoAmI()) == [os.getpid(), os.geteuid(),
                                                        os.getegid()]
            assert client.call(self.ops().Privileged()) == f"hello uid {os.geteuid()}"

    # -- progress, cancel, busy ----------------------------------------------------
    def test_progress_and_result(self, service: ServiceProcess, transport: str) -> None:
        seen: list[int] = []
        with self.connect(service, transport) as client:
            result = client.call(self.ops().Slow(steps=20, delay=0.005),
                                 on_progress=lambda op: seen.append(op.permille))
            assert client.echo(b"after") == b"after"
        assert result == 20
        assert seen and seen[-1] == 1000 and seen == sorted(seen)

    def test_cancel_a_running_operation(self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport) as client:
            started = threading.Event()
            op = client.start(self.ops().Slow(steps=10_000, delay=0.01),
                              on_progress=lambda o: started.set())
            def cancel_when_started() -> None:
                started.wait(10)
                op.cancel()

            canceller = threading.Thread(target=cancel_when_started)
            canceller.start()
            with pytest.raises(OperationError) as info:
                op.wait(timeout=20)
            canceller.join()
            assert info.value.status == Status.CANCELLED
            assert client.echo(b"after cancel") == b"after cancel"

    def test_completed_operation_is_ok_even_if_cancel_arrived(
            self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport) as client:
            op = client.start(self.ops().Stubborn(delay=0.3))
            op.cancel()
            assert op.wait(10) == "committed"
            assert client.echo(b"next") == b"next"

    def test_one_operation_at_a_time(self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport) as client:
            op = client.start(self.ops().Slow(steps=5, delay=0.01))
            with pytest.raises(BusyResourceError):
                client.start(b.Echo(data=b"x"))
            assert op.wait(10) == 5
            assert client.echo(b"y") == b"y"

    def test_concurrent_use_is_busy_not_corrupt(self, service: ServiceProcess,
                                                transport: str) -> None:
        errors: list[BaseException] = []
        with self.connect(service, transport) as client:
            def hammer() -> None:
                for i in range(300):
                    try:
                        assert client.echo(b"%d" % i) == b"%d" % i
                    except BusyResourceError:
                        pass
                    except BaseException as exc:  # anything else is a bug
                        errors.append(exc)

            threads = [threading.Thread(target=hammer) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert client.echo(b"z") == b"z"
        assert not errors, errors[:3]

    def test_wait_timeout_leaves_the_operation_running(self, service: ServiceProcess,
                                                       transport: str) -> None:
        with self.connect(service, transport) as client:
            op = client.start(self.ops().Slow(steps=10, delay=0.02))
            with pytest.raises(AetherTimeoutError):
                op.wait(timeout=0.01)
            assert op.wait(timeout=20) == 10

    # -- errors and statuses --------------------------------------------------------
    def test_failed_operation_carries_message_and_details(
            self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport) as client:
            with pytest.raises(OperationError) as info:
                client.call(self.ops().Fail(message="disk on fire"))
            assert info.value.status == Status.FAILED
            assert info.value.message == "disk on fire"
            assert info.value.details == {"code": 42}
            assert client.echo(b"ok") == b"ok"

    def test_bad_params_rejected_with_the_field(self, service: ServiceProcess,
                                                transport: str) -> None:
        with Client(service.socket_path, transport=transport) as client:  # schema-less
            with pytest.raises(OperationError) as info:
                client.call_by_name("test.slow", {"steps": "many"})
            assert info.value.status == Status.REJECTED_BAD_PARAMS
            assert "$.steps" in info.value.message
            with pytest.raises(SchemaError):
                client.call_by_name("test.nope", {})
            assert client.call_by_name("aether.echo", {"data": b"ok"}) == b"ok"

    def test_unknown_operation_code(self, service: ServiceProcess, transport: str) -> None:
        with Client(service.socket_path, transport=transport) as client:
            op = client._start(0x0FFE, "test.undeclared", {}, None, idempotent=False)
            with pytest.raises(OperationError) as info:
                op.wait(10)
            assert info.value.status == Status.REJECTED_UNKNOWN_OP
            assert client.echo(b"ok") == b"ok"

    def test_typed_params_of_the_wrong_type(self, service: ServiceProcess,
                                            transport: str) -> None:
        with self.connect(service, transport) as client:
            with pytest.raises(OperationError) as info:
                client.call(self.ops().Slow(steps="x"))  # not validated before sending
            assert info.value.status == Status.REJECTED_BAD_PARAMS

    # -- sizes ------------------------------------------------------------------------
    def test_result_too_large_names_the_size_needed(self, service: ServiceProcess,
                                                    transport: str) -> None:
        with self.connect(service, transport, block_size=64 * 1024) as client:
            size = 200_000 if transport != "socket" else client.proto.max_payload + 1
            with pytest.raises(OperationError) as info:
                client.call(self.ops().BigResult(size=size))
            assert info.value.status == Status.RESULT_TOO_LARGE
            assert info.value.details["needed"] >= info.value.details["size"] >= size
            assert client.echo(b"still usable") == b"still usable"
            if transport != "socket":
                client.resize_blocks(retn_size=info.value.details["needed"])
                assert client.call(self.ops().BigResult(size=size)) == bytes(size)

    def test_large_parameters(self, service: ServiceProcess, transport: str) -> None:
        with self.connect(service, transport, block_size=64 * 1024) as client:
            if transport == "socket":
                limit = client.proto.max_payload
                with pytest.raises(LimitsExceededError):
                    client.echo(bytes(limit + 1))
                data = os.urandom(limit // 2)
            else:
                client.resize_blocks(retn_size=4 * 1024 * 1024)
                data = os.urandom(3 * 1024 * 1024)
            assert client.echo(data) == data
            assert client.call(b.Sink(data=data)) == len(data)

    def test_loan_fills_parameters_in_place(self, service: ServiceProcess,
                                            transport: str) -> None:
        with self.connect(service, transport) as client:
            size = 200_000 if transport != "socket" else 50_000
            with client.loan(b.Sink(data=b""), size) as loan:
                assert len(loan.buffer) == size
                loan.buffer[:] = b"\x01" * size
                if transport == "memory":  # written once: into the parameter block
                    head = bytes(client.memory.param.view[:size + 128])
                    assert b"\x01" * size in head
                assert loan.call(timeout=10) == size
            with client.loan(b.Echo(data=b""), 5) as loan:
                loan.buffer[:] = b"hello"
                assert loan.call(timeout=10) == b"hello"
            with client.loan(b.Echo(data=b""), 3) as loan:
                loan.buffer[:] = b"abc"  # left unsent: the room is given back
            assert client.echo(b"after loans") == b"after loans"
            if transport == "memory":  # the loan was the parameter block itself
                from aether import osapi

                assert client.memory.param.prot == osapi.PROT_READ

    def test_loan_write_fills_in_order_and_sums_what_it_copies(
            self, service: ServiceProcess, transport: str) -> None:
        """Loan.write's running crc must be exactly the payload's: the service
        rejects any other (and ends the session), so each call below checks it."""
        from aether.client.loan import _WRITE_CHUNK

        with self.connect(service, transport, block_size=4 * 1024 * 1024) as client:
            # Bigger than write()'s chunk (a bulk loan sums in several steps),
            # with pieces that straddle the chunk boundary.
            size = 2 * _WRITE_CHUNK + 1000 if transport != "socket" else 60_000
            data = os.urandom(size)
            cuts = sorted({0, 1, size // 3, _WRITE_CHUNK % size, size - 1, size})
            with client.loan(b.Sink(data=b""), size) as loan:
                for a, z in itertools.pairwise(cuts):
                    assert loan.write(data[a:z]) == z - a
                assert loan.written == size
                with pytest.raises(ValueError, match="do not fit"):
                    loan.write(b"x")
                assert loan.written == size
                assert loan.call(timeout=10) == size
            with client.loan(b.Echo(data=b""), 4000) as loan:
                loan.write(memoryview(data[:4000]))
                assert loan.call(timeout=10) == data[:4000]
            # Partly written: the rest is summed as it lies when the call goes.
            with client.loan(b.Echo(data=b""), 3000) as loan:
                loan.write(data[:1000])
                assert loan.call(timeout=10)[:1000] == data[:1000]
            # Written, then changed through the buffer: the sum is not trusted.
            with client.loan(b.Echo(data=b""), 3000) as loan:
                loan.write(data[:3000])
                loan.buffer[:2] = b"ZZ"
                assert loan.call(timeout=10) == b"ZZ" + data[2:3000]
            with client.loan(b.Echo(data=b""), 4) as loan:
                view = loan.buffer  # handed out first, changed after the write
                loan.write(b"abcd")
                view[3:4] = b"!"
                assert loan.call(timeout=10) == b"abc!"
            assert client.echo(b"after loans") == b"after loans"

    # -- peers that go away ---------------------------------------------------------------
    def test_service_killed_mid_operation_outcome_unknown(
            self, service: ServiceProcess, transport: str) -> None:
        client = self.connect(service, transport)
        started = threading.Event()
        op = client.start(self.ops().Slow(steps=100_000, delay=0.01),
                          on_progress=lambda o: started.set())
        errors: list[BaseException] = []

        def run() -> None:
            try:
                op.wait(30)
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=run)
        waiter.start()
        assert started.wait(10)
        service.kill()
        waiter.join(30)
        assert len(errors) == 1 and isinstance(errors[0], OutcomeUnknownError), errors
        assert "unknown" in str(errors[0])
        client.close()

    def test_client_killed_frees_its_session(self, service: ServiceProcess,
                                             transport: str) -> None:
        child = ScriptedChild(_CHILD_CLIENT, str(service.socket_path), transport)
        try:
            assert child.line() == f"started {transport}"
            with self.connect(service, transport) as client:
                assert client.status().sessions == 2
                child.kill()
                wait_until(lambda: client.status().sessions == 1, 10,
                           "the killed client's session to end", watch_pid=service.pid)
                assert client.echo(b"alive") == b"alive"
        finally:
            child.kill()

    def test_sigterm_cancels_and_exits_zero(self, service: ServiceProcess,
                                            transport: str) -> None:
        client = self.connect(service, transport)
        started = threading.Event()
        op = client.start(self.ops().Slow(steps=100_000, delay=0.01),
                          on_progress=lambda o: started.set())
        errors: list[BaseException] = []
        waiter = threading.Thread(target=lambda: _catch(errors, op.wait, 30))
        waiter.start()
        assert started.wait(10)
        assert service.stop() == 0
        waiter.join(30)
        assert len(errors) == 1
        err = errors[0]
        assert isinstance(err, OperationError)
        assert err.status == Status.CANCELLED or isinstance(err, OutcomeUnknownError)
        client.close()

    def test_schema_mismatch_is_a_handshake_error(self, service: ServiceProcess,
                                                  transport: str) -> None:
        with pytest.raises(HandshakeError) as info:
            Client(service.socket_path, schema=b, transport=transport)
        assert info.value.reason == "schema-mismatch"

    def test_stopped_client_does_not_block_another(self, service: ServiceProcess,
                                                   transport: str) -> None:
        child = ScriptedChild(_CHILD_CLIENT, str(service.socket_path), transport)
        try:
            assert child.line() == f"started {transport}"
            os.kill(child.proc.pid, signal.SIGSTOP)
            with self.connect(service, transport) as client:
                for _ in range(50):
                    assert client.echo(b"ping") == b"ping"
        finally:
            child.kill()


def _catch(errors: list[BaseException], func: Any, *args: Any) -> None:
    try:
        func(*args)
    except BaseException as exc:
        errors.append(exc)
