"""Property tests (hypothesis) on the wire codec and both state machines.

docs/protocol.md §2.3: decoding never raises anything but RemoteProtocolError.
docs/protocol.md §1/§8: whatever arrives or is asked for, in any state and in
any order, the machines raise only ProtocolError, and once in ERROR stay there.

(Named test_wire_properties.py so that it cannot clash with another
directory's test_properties.py under rootdir-relative discovery.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import HealthCheck, event as note_event, given, settings, strategies as st
from wire_helpers import FINGERPRINT, POINTS, reach, wire_pair

from aether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from aether.wire import (
    CONTROL_SIZE,
    MAX_TAIL,
    ClientProtocol,
    Code,
    ServiceProtocol,
    State,
    Status,
    decode,
    encode,
    messages as m,
)
from aether.wire.states import ANY_STATE, CLIENT_TABLE, SERVICE_TABLE

FUZZ = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
HEADER = struct.Struct("<HHIQQ")
U64 = (1 << 64) - 1
U16 = 0xFFFF

Side = ServiceProtocol | ClientProtocol

# -- strategies ---------------------------------------------------------------

codes = st.one_of(st.sampled_from([int(c) for c in Code]), st.integers(0, U16))
u64 = st.integers(0, U64)  # hypothesis favours 0, small values and the ends of the range
tails = st.one_of(st.just(b""), st.binary(max_size=24),
                  st.sampled_from([b"x" * MAX_TAIL, b"x" * (MAX_TAIL + 1)]))


def _pack(code: int, flags: int, reserved: int, a: int, b: int, tail: bytes, cut: int) -> bytes:
    data = HEADER.pack(code, flags, reserved, a, b) + tail
    return data[:cut] if cut >= 0 else data


datagrams = st.one_of(
    st.binary(max_size=64),  # anything at all
    st.builds(  # headers with plausible codes and random parts, sometimes cut short
        _pack, codes, st.sampled_from([0, 0, 0, 1, U16]), st.sampled_from([0, 0, 0, 1]),
        u64, u64, tails, st.sampled_from([-1, -1, -1, 0, 10, 23, 24, 25]),
    ),
)


small_id = st.integers(0, 4)
status = st.one_of(st.sampled_from([int(s) for s in Status]), st.integers(0, 20))
error_code = st.integers(0, 16)
text = st.text(max_size=20)
payload = st.binary(max_size=16)


def events(pid: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[m.Event]:
    """Valid-looking events with small, in-range values."""
    return st.one_of(
        st.builds(m.Hello, st.sampled_from([1, 1, 1, 2]), st.sampled_from([FINGERPRINT, 7]),
                  st.integers(0, 7)),
        st.builds(m.ClientPid, st.integers(0, 1 << 32) if pid is None else pid),
        st.builds(m.AddrParam, st.integers(0, 1 << 48), st.integers(0, 1 << 25)),
        st.builds(m.AddrRetn, st.integers(0, 1 << 48), st.integers(0, 1 << 25)),
        st.just(m.IpcTest()),
        st.builds(m.TestDone, st.sampled_from([0, 0, 0, 6])),
        st.builds(m.TestVerified, st.sampled_from([0, 0, 0, 13])),
        st.builds(m.Execute, small_id, st.integers(0, 100)),
        st.builds(m.ExecuteInline, small_id, st.integers(0, 5), payload),
        st.builds(m.Cancel, small_id),
        st.builds(m.Started, small_id, status),
        st.builds(m.Progress, small_id, st.integers(0, 1000), payload),
        st.builds(m.Done, small_id, status),
        st.builds(m.DoneInline, small_id, status, payload),
        st.builds(m.Error, error_code, st.integers(0, 3), text),
        st.builds(m.Goodbye, st.integers(0, 3), text),
        st.builds(m.SocketMode, st.sampled_from([0, 100, 1 << 20, 1 << 30])),
    )


roles = st.sampled_from(["service", "client"])
points = st.sampled_from(POINTS)


def check_sticky(side: Side) -> None:
    """After ERROR or CLOSED every call raises LocalProtocolError and nothing changes."""
    state = side.state
    for call in (lambda: side.receive(encode(m.Goodbye(0))), lambda: side.receive(b""),
                 lambda: side.send(m.Goodbye(0))):
        try:
            call()
        except LocalProtocolError:
            pass
        else:
            raise AssertionError(f"a call succeeded in {state}")
        assert side.state is state


def table_of(side: Side) -> dict[State, dict[tuple[str, type[m.Event]], State]]:
    return SERVICE_TABLE if isinstance(side, ServiceProtocol) else CLIENT_TABLE


# -- codec ----------------------------------------------------------------------


@FUZZ
@given(datagrams)
def test_decode_random_bytes_raises_only_remote_protocol_error(data: bytes) -> None:
    """protocol.md §2.3: decode() returns an event or raises RemoteProtocolError."""
    try:
        event = decode(data, max_payload=64)
    except RemoteProtocolError:
        return
    assert isinstance(event, m.Event)
    assert len(data) >= CONTROL_SIZE
    # what decodes re-encodes to the same header code, and decodes again to itself
    assert decode(encode(event)) == event


@FUZZ
@given(events(pid=st.integers(0, U64)))
def test_encode_decode_round_trip(event: m.Event) -> None:
    """protocol.md §2.2: every in-range field value survives a round trip."""
    data = encode(event)
    assert struct.unpack_from("<H", data)[0] == event.code
    assert decode(data) == event


@FUZZ
@given(
    st.sampled_from(list(Code)), st.integers(0, U16), st.integers(0, U64), st.integers(0, U64),
    st.binary(max_size=MAX_TAIL),
)
def test_decode_encode_round_trip_of_valid_headers(
    code: Code, flags: int, a: int, b: int, tail: bytes
) -> None:
    """protocol.md §2.1-2.3: a valid datagram decodes, and re-encodes to the same
    bytes up to the fields that the code ignores."""
    if code is not Code.HELLO:
        flags = 0
    if code not in (Code.ERROR, Code.GOODBYE, Code.PROGRESS, Code.EXECUTE_INLINE,
                    Code.DONE_INLINE):
        tail = b""
    if code is Code.IPC_TEST:
        a = 0  # IPC_TEST ignores a and b (§2.2)
    event = decode(HEADER.pack(code, flags, 0, a, b) + tail)
    again = encode(event)
    code2, flags2, reserved2, a2, _ = HEADER.unpack_from(again)
    assert (code2, flags2, reserved2, a2) == (code, flags, 0, a)
    assert decode(again) == event


# -- state machines -------------------------------------------------------------


@FUZZ
@given(roles, points, st.lists(datagrams, min_size=1, max_size=4))
def test_receive_random_bytes_in_any_state(role: str, point: tuple[str, int],
                                           stream: list[bytes]) -> None:
    """protocol.md §1: receive() in any state raises only ProtocolError; ERROR sticks."""
    side: Side = getattr(reach(*point), role)
    for data in stream:
        before = side.state
        try:
            side.receive(data)
        except ProtocolError as exc:
            if before in (State.ERROR, State.CLOSED):
                assert isinstance(exc, LocalProtocolError)
                assert side.state is before
            else:
                assert isinstance(exc, RemoteProtocolError)
                assert side.state is State.ERROR
            check_sticky(side)
    if side.state in (State.ERROR, State.CLOSED):
        check_sticky(side)


ALL_TYPES: list[type[m.Event]] = [
    m.Hello, m.ClientPid, m.AddrParam, m.AddrRetn, m.IpcTest, m.TestDone, m.TestVerified,
    m.Execute, m.ExecuteInline, m.Cancel, m.Started, m.Progress, m.Done, m.DoneInline,
    m.Error, m.Goodbye, m.SocketMode,
]
start_status = st.sampled_from([Status.STARTED, Status.STARTED, Status.REJECTED_BAD_PARAMS,
                                Status.REJECTED_BUSY, Status.OK, 99])
final_status = st.sampled_from([Status.OK, Status.OK, Status.FAILED, Status.CANCELLED,
                                Status.STARTED, Status.EMPTY, 99])


_SHAPES: dict[type[m.Event], Callable[[st.SearchStrategy[int]], st.SearchStrategy[m.Event]]] = {
    m.Hello: lambda ids: st.builds(m.Hello, st.sampled_from([1, 1, 1, 2]), st.just(FINGERPRINT),
                                   st.just(3)),
    m.ClientPid: lambda ids: st.builds(m.ClientPid, st.sampled_from([4242, 0x7FFF_FFFF, 0])),
    m.AddrParam: lambda ids: st.just(m.AddrParam(0x7F00_0000_0000, 1 << 16)),
    m.AddrRetn: lambda ids: st.just(m.AddrRetn(0x7F00_0001_0000, 1 << 16)),
    m.IpcTest: lambda ids: st.just(m.IpcTest()),
    m.TestDone: lambda ids: st.builds(m.TestDone, st.sampled_from([0, 0, 0, 6])),
    m.TestVerified: lambda ids: st.builds(m.TestVerified, st.sampled_from([0, 0, 0, 13])),
    m.Execute: lambda ids: st.builds(m.Execute, ids, st.integers(0, 100)),
    m.ExecuteInline: lambda ids: st.builds(m.ExecuteInline, ids, st.integers(0, 5), payload),
    m.Cancel: lambda ids: st.builds(m.Cancel, ids),
    m.Started: lambda ids: st.builds(m.Started, ids, start_status),
    m.Progress: lambda ids: st.builds(m.Progress, ids, st.integers(0, 1000), payload),
    m.Done: lambda ids: st.builds(m.Done, ids, final_status),
    m.DoneInline: lambda ids: st.builds(m.DoneInline, ids, final_status, payload),
    m.Error: lambda ids: st.builds(m.Error, error_code, st.integers(0, 3), text),
    m.Goodbye: lambda ids: st.builds(m.Goodbye, st.integers(0, 3), text),
    m.SocketMode: lambda ids: st.builds(m.SocketMode, st.sampled_from([0, 100, 1 << 20])),
    m.MapMode: lambda ids: st.builds(m.MapMode, st.sampled_from([0, 4096, 1 << 20])),
    m.MapReady: lambda ids: st.builds(m.MapReady, st.sampled_from([4096, 1 << 20]),
                                      st.sampled_from([12288, 4096 + (2 << 20)])),
}


def shaped(cls: type[m.Event], side: Side) -> st.SearchStrategy[m.Event]:
    """An event of type ``cls`` with values aimed at ``side``'s guards (mostly valid)."""
    nxt, cur, last = side.last_op_id + 1, side.current_op_id, side.last_op_id
    ids = st.sampled_from([nxt, nxt, cur, cur, last, nxt + 1, 0])
    return _SHAPES[cls](ids)


def draw_event(data: st.DataObject, side: Side, direction: str) -> m.Event:
    """Mostly an event the table lists for ``side`` now, sometimes any event at all."""
    listed = [cls for (d, cls) in table_of(side).get(side.state, {}) if d == direction]
    if listed and data.draw(st.integers(0, 9), label="pick") < 8:
        cls = data.draw(st.sampled_from(listed), label="type")
    else:
        cls = data.draw(st.sampled_from(ALL_TYPES), label="type")
    return data.draw(shaped(cls, side), label="event")


@FUZZ
@given(roles, points, st.data())
def test_random_event_orders_raise_only_protocol_errors(
    role: str, point: tuple[str, int], data: st.DataObject
) -> None:
    """protocol.md §8: events sent and received in any order either follow the
    tables or raise ProtocolError; once ERROR, always ERROR."""
    side: Side = getattr(reach(*point), role)
    table = table_of(side)
    errored = False
    for _ in range(data.draw(st.integers(1, 15), label="length")):
        direction = data.draw(st.sampled_from(["send", "recv"]), label="direction")
        event = draw_event(data, side, direction)
        if direction == "recv" and data.draw(st.integers(0, 30)) == 0:
            event = m.ConnectionClosed()
        before = side.state
        note_event(f"{role} in {before.value}")
        try:
            if direction == "send":
                side.send(event)
            else:
                side.receive(b"" if isinstance(event, m.ConnectionClosed) else encode(event))
        except ProtocolError:
            if before is State.CLOSED:
                assert side.state is State.CLOSED
            else:
                assert side.state is State.ERROR
                errored = True
                break
            continue
        key = (direction, type(event))
        allowed = table.get(before, {}).get(key) or ANY_STATE.get(key)
        assert allowed is not None, f"{key} accepted in {before}"
        # guards may only keep the state, end the session, or pick a rejection's IDLE
        assert side.state in (allowed, before, State.CLOSED, State.IDLE)
    if errored or side.state is State.CLOSED:
        assert side.state is (State.ERROR if errored else State.CLOSED)
        check_sticky(side)  # every later call raises, and the state stays


HANDSHAKE_PEERS = {
    State.WAIT_CLIENT_PID, State.SEND_CLIENT_PID, State.WAIT_ADDR_PARAM,
    State.SEND_ADDR_PARAM, State.WAIT_ADDR_RETN, State.SEND_ADDR_RETN, State.WAIT_IPC_TEST,
    State.SEND_IPC_TEST, State.TESTING, State.WAIT_TEST_DONE, State.WAIT_VERIFIED,
    State.VERIFYING,
}


@FUZZ
@given(points, st.data())
def test_a_conforming_sender_never_trips_a_conforming_receiver(
    point: tuple[str, int], data: st.DataObject
) -> None:
    """Lockstep: whatever one machine agrees to send, the other accepts, and both
    agree on op ids afterwards (protocol.md §8: both tables describe one protocol)."""
    p = reach(*point)
    for _ in range(data.draw(st.integers(1, 15), label="length")):
        direction = data.draw(st.sampled_from(["c2s", "s2c"]), label="direction")
        sender, receiver = (p.client, p.service) if direction == "c2s" else (p.service, p.client)
        event = draw_event(data, sender, "send")
        if isinstance(event, m.ClientPid) and not 0 < event.pid <= 0x7FFF_FFFF:
            continue  # the client machine takes its pid from getpid(); only the service checks
        note_event(f"service in {p.service.state.value}")
        try:
            datagram = sender.send(event)
        except LocalProtocolError:
            assert sender.state in (State.ERROR, State.CLOSED)
            return
        got = receiver.receive(datagram)  # must not raise
        assert got == event
        if isinstance(event, m.Error | m.Goodbye) or sender.state is State.CLOSED:
            assert sender.state is receiver.state is State.CLOSED
            return
        assert sender.state is receiver.state or {sender.state, receiver.state} <= HANDSHAKE_PEERS
        assert sender.last_op_id == receiver.last_op_id
        assert sender.current_op_id == receiver.current_op_id


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_fresh_pair_survives_any_client_stream(stream: list[bytes]) -> None:
    """A service fed junk before, during and after HELLO raises only ProtocolError."""
    p = wire_pair()
    p.client.receive(p.service.hello())
    for data in stream:
        try:
            p.service.receive(data)
        except ProtocolError:
            assert p.service.state in (State.ERROR, State.CLOSED)


def _grid() -> list[m.Event]:
    """Every event type crossed with edge values of each field (in and out of range)."""
    ids = [0, 1, 2, 3, U64]
    statuses = [*(int(s) for s in Status), 99, 0xFFFF_FFFF, U64]
    grid: list[m.Event] = [m.IpcTest()]
    grid += [m.Hello(v, FINGERPRINT, 3) for v in (0, 1, 2, U64)]
    grid += [m.ClientPid(p) for p in (0, 1, 4242, 0x7FFF_FFFF, 0x8000_0000, U64)]
    for cls in (m.AddrParam, m.AddrRetn):
        grid += [cls(a, n) for a, n in ((0, 0), (0x7F00_0000_0000, 1 << 16), (U64, U64))]
    grid += [cls(e) for cls in (m.TestDone, m.TestVerified) for e in (0, 6, 13, U64)]
    grid += [m.Execute(i, n) for i in ids for n in (0, U64)]
    grid += [m.ExecuteInline(i, c, b"x" * n) for i in ids for c in (0, 3) for n in (0, 10)]
    grid += [m.Cancel(i) for i in ids]
    grid += [cls(i, s) for cls in (m.Started, m.Done) for i in ids for s in statuses]
    grid += [m.DoneInline(i, s, b"") for i in ids for s in statuses]
    grid += [m.Progress(i, p, b"\x80") for i in ids for p in (0, 1000, U64)]
    grid += [m.Error(e, 0, "x") for e in (0, 1, U64)] + [m.Goodbye(r) for r in (0, 2, U64)]
    grid += [m.SocketMode(x) for x in (0, 1, U64)]
    return grid


GRID = _grid()
# only for send(): values that cannot be encoded at all
OUT_OF_RANGE: list[m.Event] = [m.Execute(-1, 0), m.Started(1, 1 << 64), m.ClientPid(-4),
                               m.Progress(1, 1, b"x" * (MAX_TAIL + 1)), m.Hello(1, 1, 1 << 16)]


def test_every_state_event_and_edge_value_raises_only_protocol_errors() -> None:
    """Exhaustive companion of the properties above: every reachable state x
    every event type x edge values, sent and received, by both roles. Nothing
    but ProtocolError escapes, and a violation leaves the side in ERROR."""
    for point in POINTS:
        for role in ("service", "client"):
            for direction in ("send", "recv"):
                expected = LocalProtocolError if direction == "send" else RemoteProtocolError
                for event in GRID + (OUT_OF_RANGE if direction == "send" else []):
                    side: Side = getattr(reach(*point), role)
                    before = side.state
                    try:
                        if direction == "send":
                            side.send(event)
                        else:
                            side.receive(encode(event))
                    except ProtocolError as exc:
                        assert isinstance(exc, expected), (point, role, event)
                        assert side.state is State.ERROR
                        continue
                    key = (direction, type(event))
                    assert key in table_of(side).get(before, {}) or key in ANY_STATE, (
                        point, role, event)
