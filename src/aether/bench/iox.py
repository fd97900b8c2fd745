"""iceoryx2 request-response, both halves (pip ``iceoryx2`` 0.10.0).

Payloads are ``iceoryx2.Slice[c_uint8]``: the client loans a request in
iceoryx2's shared memory and copies the payload in once; the server reads it
in place and loans the reply. Neither ``Server.receive()`` nor
``PendingResponse.receive()`` ever blocks in 0.10.0, so there are two ways
to wait, both measured: busy-poll (``iceoryx2.poll``) and an iceoryx2 event
service per direction (``Notifier.notify()`` / ``Listener.blocking_wait()``,
``iceoryx2.blocking``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import iceoryx2 as iox2

_U8 = ctypes.c_uint8


def _node() -> Any:
    iox2.set_log_level(iox2.LogLevel.Error)
    return iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)


def _service(node: Any, name: str) -> Any:
    return (node.service_builder(iox2.ServiceName.new(name))
            .request_response(iox2.Slice[_U8], iox2.Slice[_U8])
            .open_or_create())


def _event(node: Any, name: str) -> Any:
    return node.service_builder(iox2.ServiceName.new(name)).event().open_or_create()


def _fill(uninit: Any, data: memoryview | bytes) -> Any:
    ctypes.memmove(uninit.payload_ptr, bytes(data) if isinstance(data, memoryview) else data,
                   len(data))
    return uninit.assume_init()


def serve(name: str, *, blocking: bool, sink: bool, capacity: int,
          ready: Callable[[], None]) -> None:
    node = _node()
    service = _service(node, name)
    server = (service.server_builder().initial_max_slice_len(max(capacity, 1))
              .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo).create())
    if blocking:
        requests = _event(node, name + ".req").listener_builder().create()
        replies = _event(node, name + ".resp").notifier_builder().create()
    ready()
    ack = b"k"
    while True:
        active = server.receive()
        if active is None:
            if blocking:
                requests.blocking_wait()
            continue
        n = active.payload().len()
        out = ack if sink else ctypes.string_at(active.payload_ptr, n)
        response = active.loan_slice_uninit(len(out))
        _fill(response, out).send()
        active.delete()
        if blocking:
            replies.notify()


class IoxClient:
    """The client half; ``caller(payload)`` returns one timed round trip."""

    def __init__(self, name: str, *, blocking: bool, capacity: int) -> None:
        self.node = _node()
        self.service = _service(self.node, name)
        self.client = (self.service.client_builder().initial_max_slice_len(max(capacity, 1))
                       .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo).create())
        self.blocking = blocking
        if blocking:
            self.notify = _event(self.node, name + ".req").notifier_builder().create()
            self.listen = _event(self.node, name + ".resp").listener_builder().create()

    def wait_for_server(self, alive: Callable[[], bool]) -> None:
        """Requests sent before the server is connected are lost: wait for it."""
        import time

        while True:
            pending = _fill(self.client.loan_slice_uninit(1), b"\0").send()
            if pending.number_of_server_connections > 0:
                pending.delete()
                return
            pending.delete()
            if not alive():
                raise RuntimeError("iceoryx2 server exited")
            time.sleep(0.01)

    def caller(self, payload: bytes) -> Callable[[], bytes]:
        client, n = self.client, len(payload)
        memmove, string_at = ctypes.memmove, ctypes.string_at
        notify = self.notify.notify if self.blocking else None
        wait = self.listen.blocking_wait if self.blocking else None

        def once() -> bytes:
            uninit = client.loan_slice_uninit(n)
            memmove(uninit.payload_ptr, payload, n)
            pending = uninit.assume_init().send()
            if notify is not None:
                notify()
            while (response := pending.receive()) is None:
                if wait is not None:
                    wait()
            data = string_at(response.payload_ptr, response.payload().len())
            response.delete()
            pending.delete()
            return data
        return once

    def close(self) -> None:
        for attr in ("notify", "listen", "client"):
            port = getattr(self, attr, None)
            if port is not None:
                port.delete()
