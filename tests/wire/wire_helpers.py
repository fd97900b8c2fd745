"""Helpers for the sans-IO wire tests: a service and a client joined in memory.

``wire_pair()`` gives a :class:`WirePair` whose ``c2s``/``s2c`` methods send an
event from one side, feed the datagram to the other and check that the event
round-trips unchanged. Handshake shortcuts drive both sides through the
steps of docs/protocol.md §3 (H1-H8 for the memory transport, S1 for the
socket transport).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aether.wire import (
    AddrParam,
    AddrRetn,
    ClientPid,
    ClientProtocol,
    Event,
    Execute,
    ExecuteInline,
    IpcTest,
    ServiceProtocol,
    SocketMode,
    Started,
    State,
    Status,
    TestDone,
    TestVerified,
    Transport,
)

FINGERPRINT = 0x0123_4567_89AB_CDEF
PID = 4242
PARAM = (0x7F00_0000_0000, 64 * 1024)
RETN = (0x7F00_0001_0000, 64 * 1024)


@dataclass
class WirePair:
    service: ServiceProtocol
    client: ClientProtocol
    log: list[tuple[str, Event]] = field(default_factory=list)

    def c2s(self, event: Event) -> Event:
        """Client sends ``event``; the service receives it; both must agree."""
        data = self.client.send(event)
        got = self.service.receive(data)
        assert got == event
        self.log.append(("c2s", event))
        return got

    def s2c(self, event: Event) -> Event:
        """Service sends ``event``; the client receives it; both must agree."""
        data = self.service.send(event)
        got = self.client.receive(data)
        assert got == event
        self.log.append(("s2c", event))
        return got

    def hello(self) -> None:
        """protocol.md §3 H1-H2."""
        got = self.client.receive(self.service.hello())
        assert got == self.client.hello
        assert self.service.state is State.WAIT_CLIENT_PID
        assert self.client.state is State.SEND_CLIENT_PID

    def register(self, param: tuple[int, int] = PARAM, retn: tuple[int, int] = RETN) -> None:
        """protocol.md §3 H4-H8 (also O6, re-registration)."""
        self.c2s(AddrParam(*param))
        self.c2s(AddrRetn(*retn))
        self.c2s(IpcTest())
        assert self.service.state is State.TESTING
        assert self.client.state is State.WAIT_TEST_DONE
        self.s2c(TestDone(0))
        assert self.client.state is State.VERIFYING
        self.c2s(TestVerified(0))

    def memory_handshake(self) -> WirePair:
        """protocol.md §3 H1-H8."""
        self.hello()
        self.c2s(ClientPid(PID))
        self.register()
        assert self.service.state is State.IDLE and self.client.state is State.IDLE
        return self

    def socket_handshake(self, max_payload: int | None = None) -> WirePair:
        """protocol.md §3 H1, H2, S1, H7, H8."""
        self.hello()
        limit = self.client.max_payload if max_payload is None else max_payload
        self.c2s(SocketMode(limit))
        assert self.service.state is State.TESTING
        self.s2c(TestDone(0))
        self.c2s(TestVerified(0))
        assert self.service.state is State.IDLE and self.client.state is State.IDLE
        return self


def wire_pair(
    *,
    transports: Transport = Transport.MEMORY | Transport.SOCKET | Transport.MAPPING,
    max_payload: int = 1 << 20,
) -> WirePair:
    """A fresh service/client pair before H1."""
    return WirePair(
        ServiceProtocol(fingerprint=FINGERPRINT, transports=transports, max_payload=max_payload),
        ClientProtocol(max_payload=max_payload),
    )


def memory_pair() -> WirePair:
    """A pair in IDLE on the memory transport."""
    return wire_pair().memory_handshake()


def socket_pair() -> WirePair:
    """A pair in IDLE on the socket transport."""
    return wire_pair().socket_handshake()


# Paths through the handshake and one operation (protocol.md §3, §4). POINTS
# are (path, n): the pair after the first n steps of a path; together they
# reach every state of both tables (socket-path prefixes 0 and 1 equal the
# memory path's).
Step = tuple[str, Event | None]
MEMORY_PATH: list[Step] = [
    ("hello", None),
    ("c2s", ClientPid(PID)),
    ("c2s", AddrParam(*PARAM)),
    ("c2s", AddrRetn(*RETN)),
    ("c2s", IpcTest()),
    ("s2c", TestDone(0)),
    ("c2s", TestVerified(0)),
    ("c2s", Execute(1, 0)),
    ("s2c", Started(1, Status.STARTED)),
]
SOCKET_PATH: list[Step] = [
    ("hello", None),
    ("c2s", SocketMode(1 << 20)),
    ("s2c", TestDone(0)),
    ("c2s", TestVerified(0)),
    ("c2s", ExecuteInline(1, 3, b"")),
    ("s2c", Started(1, Status.STARTED)),
]
POINTS = [("memory", n) for n in range(len(MEMORY_PATH) + 1)] + [
    ("socket", n) for n in range(2, len(SOCKET_PATH) + 1)
]


def reach(path: str, n: int) -> WirePair:
    """A fresh pair after the first ``n`` steps of ``path`` ("memory" or "socket")."""
    p = wire_pair()
    for kind, event in (MEMORY_PATH if path == "memory" else SOCKET_PATH)[:n]:
        if kind == "hello":
            p.hello()
        elif kind == "c2s":
            assert event is not None
            p.c2s(event)
        else:
            assert event is not None
            p.s2c(event)
    return p
