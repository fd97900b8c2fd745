"""aether.wire.connection: ServiceProtocol and ClientProtocol joined in memory.

Step ids (H1-H8, S1, O1-O6) are those of docs/protocol.md §3 and §4.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from wire_helpers import (
    FINGERPRINT,
    PARAM,
    PID,
    POINTS,
    RETN,
    WirePair,
    memory_pair,
    reach,
    socket_pair,
    wire_pair,
)

from aether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from aether.wire import (
    PROTOCOL_VERSION,
    ClientProtocol,
    ServiceProtocol,
    State,
    Status,
    Transport,
    encode,
    messages as m,
)
from aether.wire.states import ANY_STATE, CLIENT_TABLE, RECV, SEND, SERVICE_TABLE

Side = ServiceProtocol | ClientProtocol


def feed(side: Side, event: m.Event) -> m.Event:
    """Deliver ``event``'s bytes to ``side`` as if its peer had sent them."""
    return side.receive(encode(event))


def assert_stuck_in_error(side: Side) -> None:
    """protocol.md §1: after a violation every later call fails and ERROR stays."""
    assert side.state is State.ERROR
    assert side.closed and not side.ready
    probes: list[Callable[[], object]] = [
        lambda: side.receive(encode(m.Goodbye(0))),
        lambda: side.receive(b""),
        lambda: side.receive(encode(m.Hello(1, FINGERPRINT, 3))),
        lambda: side.send(m.Goodbye(0)),
        lambda: side.send(m.Error(1)),
        lambda: side.send(m.Execute(side.last_op_id + 1, 0)),
    ]
    for probe in probes:
        with pytest.raises(LocalProtocolError) as info:
            probe()
        assert info.value.state == "ERROR"
        assert side.state is State.ERROR


def violation(
    side: Side, action: Callable[[], object], kind: type[ProtocolError], event: str
) -> ProtocolError:
    """Run ``action``, expect ``kind`` naming the state and ``event``, then ERROR for good."""
    before = side.state
    with pytest.raises(kind) as info:
        action()
    err = info.value
    assert type(err) is kind
    assert err.state == before.value and before.value in str(err)
    assert err.event == event and event in str(err)
    assert_stuck_in_error(side)
    return err


# --------------------------------------------------------------------------
# §3 handshake
# --------------------------------------------------------------------------


class TestHandshake:
    def test_mapping_handshake_and_renegotiation(self) -> None:
        """protocol.md §10.1 M1-M4: MAP_MODE, MAP_READY, TEST_VERIFIED; again in IDLE."""
        p = wire_pair()
        p.client.receive(p.service.hello())
        p.c2s(m.MapMode(1 << 16))  # M1
        assert p.service.transport is p.client.transport is Transport.MAPPING
        assert (p.service.state, p.client.state) == (State.TESTING, State.WAIT_TEST_DONE)
        p.s2c(m.MapReady(1 << 16, 4096 + (2 << 16)))  # M2
        p.c2s(m.TestVerified(0))  # M3
        assert p.service.state is p.client.state is State.IDLE
        p.c2s(m.MapMode(1 << 20))  # M4
        p.s2c(m.MapReady(1 << 20, 4096 + (2 << 20)))
        p.c2s(m.TestVerified(0))
        assert p.service.state is p.client.state is State.IDLE
        # operations of the mapping transport never use the socket's EXECUTE
        violation(p.service, lambda: p.service.receive(encode(m.Execute(1, 0))),
                  RemoteProtocolError, "Execute")

    def test_mapping_refused_when_not_offered(self) -> None:
        p = wire_pair(transports=Transport.MEMORY | Transport.SOCKET)
        p.client.receive(p.service.hello())
        data = p.client.send(m.MapMode(0))
        violation(p.service, lambda: p.service.receive(data), RemoteProtocolError, "MapMode")

    def test_memory_handshake_step_by_step(self) -> None:
        """protocol.md §3 H1-H8 on the memory transport."""
        p = wire_pair()
        assert (p.service.state, p.client.state) == (State.SEND_HELLO, State.WAIT_HELLO)
        hello = p.client.receive(p.service.hello())  # H1, H2
        offered = int(Transport.MEMORY | Transport.SOCKET | Transport.MAPPING)
        assert hello == m.Hello(PROTOCOL_VERSION, FINGERPRINT, offered)
        assert p.client.hello == hello
        assert (p.service.state, p.client.state) == (State.WAIT_CLIENT_PID, State.SEND_CLIENT_PID)
        p.c2s(m.ClientPid(PID))  # H3
        assert p.service.claimed_pid == PID
        assert p.service.transport is p.client.transport is Transport.MEMORY
        assert (p.service.state, p.client.state) == (State.WAIT_ADDR_PARAM, State.SEND_ADDR_PARAM)
        p.c2s(m.AddrParam(*PARAM))  # H4
        assert p.service.param_block == PARAM
        assert (p.service.state, p.client.state) == (State.WAIT_ADDR_RETN, State.SEND_ADDR_RETN)
        p.c2s(m.AddrRetn(*RETN))  # H5
        assert p.service.retn_block == RETN
        assert (p.service.state, p.client.state) == (State.WAIT_IPC_TEST, State.SEND_IPC_TEST)
        p.c2s(m.IpcTest())  # H6
        assert (p.service.state, p.client.state) == (State.TESTING, State.WAIT_TEST_DONE)
        p.s2c(m.TestDone(0))  # H7
        assert (p.service.state, p.client.state) == (State.WAIT_VERIFIED, State.VERIFYING)
        assert not p.service.ready and not p.client.ready
        p.c2s(m.TestVerified(0))  # H8
        assert (p.service.state, p.client.state) == (State.IDLE, State.IDLE)
        assert p.service.ready and p.client.ready

    def test_socket_handshake(self) -> None:
        """protocol.md §3 H1, H2, S1, H7, H8: no pid, no blocks."""
        p = wire_pair().socket_handshake()
        assert p.service.transport is p.client.transport is Transport.SOCKET
        assert p.service.claimed_pid == 0 and p.service.param_block is None

    def test_S1_service_adopts_a_smaller_client_max_payload(self) -> None:
        """protocol.md §3 S1: the client's max payload binds the service too."""
        p = wire_pair(max_payload=1 << 20).socket_handshake(max_payload=1000)
        assert p.service.max_payload == 1000
        # DONE_INLINE over the client's limit is what the client would refuse
        p.c2s(m.ExecuteInline(1, 3, b""))
        p.s2c(m.Started(1, Status.STARTED))
        with pytest.raises(RemoteProtocolError):
            m.decode(encode(m.DoneInline(1, Status.OK, b"x" * 1001)), max_payload=1000)

    @pytest.mark.parametrize("limit", [0, 1 << 20, 1 << 30])
    def test_S1_larger_or_zero_client_limit_keeps_ours(self, limit: int) -> None:
        p = wire_pair(max_payload=1 << 20).socket_handshake(max_payload=limit)
        assert p.service.max_payload == 1 << 20

    @pytest.mark.parametrize("version", [0, 2, PROTOCOL_VERSION + 1, (1 << 64) - 1])
    def test_H2_client_refuses_other_protocol_versions(self, version: int) -> None:
        """protocol.md §3 H2: the client checks HELLO's version and names both."""
        client = ClientProtocol()
        err = violation(client, lambda: feed(client, m.Hello(version, FINGERPRINT, 3)),
                        RemoteProtocolError, "Hello")
        assert f"protocol version {version}, ours {PROTOCOL_VERSION}" in str(err)

    def test_H1_service_sends_only_its_own_version(self) -> None:
        service = ServiceProtocol(fingerprint=FINGERPRINT)
        violation(service, lambda: service.send(m.Hello(2, FINGERPRINT, 3)),
                  LocalProtocolError, "Hello")

    def test_H3_memory_transport_not_offered(self) -> None:
        """protocol.md §3 H3: CLIENT_PID needs MEMORY in HELLO's flags."""
        p = wire_pair(transports=Transport.SOCKET)
        p.hello()
        assert p.client.hello is not None and p.client.hello.transports == Transport.SOCKET
        violation(p.service, lambda: feed(p.service, m.ClientPid(PID)),
                  RemoteProtocolError, "ClientPid")

    def test_S1_socket_transport_not_offered(self) -> None:
        p = wire_pair(transports=Transport.MEMORY)
        p.hello()
        violation(p.service, lambda: feed(p.service, m.SocketMode(1 << 20)),
                  RemoteProtocolError, "SocketMode")

    @pytest.mark.parametrize("pid", [0, 0x8000_0000, (1 << 64) - 1])
    def test_H3_pid_out_of_range(self, pid: int) -> None:
        p = wire_pair()
        p.hello()
        err = violation(p.service, lambda: feed(p.service, m.ClientPid(pid)),
                        RemoteProtocolError, "ClientPid")
        assert "not a valid pid" in str(err)

    def test_H3_largest_pid_accepted(self) -> None:
        p = wire_pair()
        p.hello()
        p.c2s(m.ClientPid(0x7FFF_FFFF))

    def test_H7_failed_pattern_test_closes_both(self) -> None:
        """protocol.md §3 H7: TEST_DONE(error) ends the session on both sides."""
        p = wire_pair()
        p.hello()
        p.c2s(m.ClientPid(PID))
        p.c2s(m.AddrParam(*PARAM))
        p.c2s(m.AddrRetn(*RETN))
        p.c2s(m.IpcTest())
        p.s2c(m.TestDone(6))  # PATTERN_MISMATCH
        assert p.service.state is p.client.state is State.CLOSED
        with pytest.raises(LocalProtocolError):
            p.client.send(m.TestVerified(0))

    def test_H8_zeros_missing_closes_both(self) -> None:
        """protocol.md §3 H8: TEST_VERIFIED(ZEROS_MISSING) ends the session."""
        p = wire_pair()
        p.hello()
        p.c2s(m.SocketMode(1 << 20))
        p.s2c(m.TestDone(0))
        p.c2s(m.TestVerified(13))
        assert p.service.state is p.client.state is State.CLOSED
        assert p.service.closed and p.client.closed

    def test_H4_blocks_only_on_the_memory_transport(self) -> None:
        p = socket_pair()
        violation(p.client, lambda: p.client.send(m.AddrParam(*PARAM)),
                  LocalProtocolError, "AddrParam")
        p = socket_pair()
        violation(p.service, lambda: feed(p.service, m.AddrParam(*PARAM)),
                  RemoteProtocolError, "AddrParam")


# --------------------------------------------------------------------------
# every (state, message) pair that the tables do not list is a violation
# --------------------------------------------------------------------------

def candidates(side: Side) -> list[m.Event]:
    """One plausible event of every kind, with values the guards would accept."""
    nxt = side.last_op_id + 1
    cur = side.current_op_id or 1
    return [
        m.Hello(PROTOCOL_VERSION, FINGERPRINT, 3),
        m.ClientPid(PID),
        m.MapMode(0),
        m.MapReady(4096, 12288),
        m.AddrParam(*PARAM),
        m.AddrRetn(*RETN),
        m.IpcTest(),
        m.TestDone(0),
        m.TestVerified(0),
        m.Execute(nxt, 0),
        m.ExecuteInline(nxt, 3, b""),
        m.Cancel(cur),
        m.Started(cur, Status.STARTED),
        m.Progress(cur, 10),
        m.Done(cur, Status.OK),
        m.DoneInline(cur, Status.OK, b""),
        m.SocketMode(1 << 20),
    ]


@pytest.mark.parametrize(("path", "n"), POINTS, ids=lambda x: str(x))
@pytest.mark.parametrize("role", ["service", "client"])
def test_every_unlisted_message_is_a_violation(role: str, path: str, n: int) -> None:
    """protocol.md §8: in every reachable state, every message the tables do not
    list raises a ProtocolError naming the state and the event, and the side
    stays in ERROR for good."""
    table = SERVICE_TABLE if role == "service" else CLIENT_TABLE
    probe = reach(path, n)
    side: Side = getattr(probe, role)
    state = side.state
    checked = 0
    for direction in (SEND, RECV):
        for event in candidates(side):
            key = (direction, type(event))
            if key in table.get(state, {}) or key in ANY_STATE:
                continue
            fresh: Side = getattr(reach(path, n), role)
            assert fresh.state is state
            if direction == SEND:
                violation(fresh, lambda f=fresh, e=event: f.send(e), LocalProtocolError,
                          type(event).__name__)
            else:
                violation(fresh, lambda f=fresh, e=event: feed(f, e), RemoteProtocolError,
                          type(event).__name__)
            checked += 1
    assert checked >= 15  # most pairs are violations in every state
    # sending the pseudo-event ConnectionClosed is never allowed
    fresh = getattr(reach(path, n), role)
    violation(fresh, lambda: fresh.send(m.ConnectionClosed()), LocalProtocolError,
              "ConnectionClosed")


@pytest.mark.parametrize(("path", "n"), POINTS, ids=lambda x: str(x))
@pytest.mark.parametrize(
    "ending",
    [("recv", m.Error(1, 0, "x")), ("recv", m.Goodbye(0)), ("recv", None),
     ("send", m.Error(12)), ("send", m.Goodbye(1, "bye"))],
    ids=["recv-Error", "recv-Goodbye", "recv-closed", "send-Error", "send-Goodbye"],
)
@pytest.mark.parametrize("role", ["service", "client"])
def test_error_and_goodbye_end_the_session_from_any_state(
    role: str, ending: tuple[str, m.Event | None], path: str, n: int
) -> None:
    """protocol.md §8 ANY_STATE: ERROR, GOODBYE and a closed socket -> CLOSED."""
    side: Side = getattr(reach(path, n), role)
    direction, event = ending
    if direction == "send":
        assert event is not None
        side.send(event)
    elif event is None:
        assert isinstance(side.receive(b""), m.ConnectionClosed)
    else:
        feed(side, event)
    assert side.state is State.CLOSED and side.closed
    for probe in (lambda: side.send(m.Goodbye(0)), lambda: side.receive(b"")):
        with pytest.raises(LocalProtocolError):
            probe()
        assert side.state is State.CLOSED


def test_malformed_datagram_puts_the_receiver_in_error() -> None:
    """protocol.md §2.3 via receive(): a bad datagram is a RemoteProtocolError."""
    p = memory_pair()
    with pytest.raises(RemoteProtocolError):
        p.service.receive(encode(m.Execute(1, 0))[:10])
    assert_stuck_in_error(p.service)
    with pytest.raises(RemoteProtocolError):
        p.client.receive(encode(m.Done(1, 1)) + b"junk")
    assert_stuck_in_error(p.client)


def test_encode_failure_on_send_is_a_local_protocol_error() -> None:
    """protocol.md §2.3: an out-of-range field is refused by send()."""
    p = memory_pair()
    p.c2s(m.Execute(1, 0))
    with pytest.raises(LocalProtocolError):
        p.service.send(m.Started(1, 1 << 64))
    assert_stuck_in_error(p.service)


# --------------------------------------------------------------------------
# §4 operations
# --------------------------------------------------------------------------


class TestOperations:
    @pytest.mark.parametrize("make", [memory_pair, socket_pair], ids=["memory", "socket"])
    def test_happy_operations_O1_to_O4(self, make: Callable[[], WirePair]) -> None:
        """protocol.md §4 O1-O4, three operations in a row."""
        p = make()
        socket = p.client.transport is Transport.SOCKET
        for op_id in (1, 2, 3):
            assert p.client.next_op_id() == op_id
            p.c2s(m.ExecuteInline(op_id, 3, b"\xc4\x00") if socket else m.Execute(op_id, 2))
            assert p.service.state is p.client.state is State.AWAIT_START
            assert p.service.current_op_id == p.client.current_op_id == op_id
            p.s2c(m.Started(op_id, Status.STARTED))
            assert p.service.state is p.client.state is State.RUNNING
            for permille in (0, 500, 1000):
                p.s2c(m.Progress(op_id, permille, b"\x80"))
            p.s2c(m.DoneInline(op_id, Status.OK, b"\xc4\x00") if socket
                  else m.Done(op_id, Status.OK))
            assert p.service.state is p.client.state is State.IDLE
            assert p.service.current_op_id == p.client.current_op_id == 0
            assert p.service.last_op_id == p.client.last_op_id == op_id

    @pytest.mark.parametrize("first", [0, 2, 7, (1 << 64) - 1])
    def test_O1_first_op_id_must_be_1(self, first: int) -> None:
        """protocol.md §4: op ids start at 1."""
        p = memory_pair()
        violation(p.client, lambda: p.client.send(m.Execute(first, 0)),
                  LocalProtocolError, "Execute")
        violation(p.service, lambda: feed(p.service, m.Execute(first, 0)),
                  RemoteProtocolError, "Execute")

    @pytest.mark.parametrize("bad", [0, 1, 2, 4, 100])
    def test_O1_reused_or_skipped_op_id_rejected(self, bad: int) -> None:
        """protocol.md §4: each EXECUTE carries exactly the previous id + 1."""
        p = memory_pair()
        for op_id in (1, 2):
            p.c2s(m.Execute(op_id, 0))
            p.s2c(m.Started(op_id, Status.STARTED))
            p.s2c(m.Done(op_id, Status.OK))
        err = violation(p.service, lambda: feed(p.service, m.Execute(bad, 0)),
                        RemoteProtocolError, "Execute")
        assert "not the next one (3)" in str(err)
        p = memory_pair()
        for op_id in (1, 2):
            p.c2s(m.Execute(op_id, 0))
            p.s2c(m.Started(op_id, Status.REJECTED_BAD_PARAMS))  # ids count rejected ops too
        violation(p.client, lambda: p.client.send(m.Execute(bad, 0)),
                  LocalProtocolError, "Execute")

    def test_O1_execute_form_must_match_the_transport(self) -> None:
        p = memory_pair()
        violation(p.client, lambda: p.client.send(m.ExecuteInline(1, 3, b"")),
                  LocalProtocolError, "ExecuteInline")
        p = memory_pair()
        violation(p.service, lambda: feed(p.service, m.ExecuteInline(1, 3, b"")),
                  RemoteProtocolError, "ExecuteInline")
        p = socket_pair()
        violation(p.client, lambda: p.client.send(m.Execute(1, 0)), LocalProtocolError, "Execute")
        p = socket_pair()
        violation(p.service, lambda: feed(p.service, m.Execute(1, 0)),
                  RemoteProtocolError, "Execute")

    @pytest.mark.parametrize(
        "status",
        [Status.REJECTED_BAD_PARAMS, Status.REJECTED_UNKNOWN_OP, Status.REJECTED_UNAUTHORIZED,
         Status.REJECTED_BUSY, Status.LIMITS_EXCEEDED],
    )
    def test_O2_rejection_via_started_status(self, status: Status) -> None:
        """protocol.md §4 O2: STARTED(rejection) ends the op; the session goes on."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, status))
        assert p.service.state is p.client.state is State.IDLE
        assert p.service.current_op_id == p.client.current_op_id == 0
        p.c2s(m.Execute(2, 0))

    def test_O2_socket_rejection_via_done_inline(self) -> None:
        """protocol.md §4 O2: on the socket transport a rejection is DONE_INLINE."""
        p = socket_pair()
        p.c2s(m.ExecuteInline(1, 0x999, b""))
        p.s2c(m.DoneInline(1, Status.REJECTED_UNKNOWN_OP, b"\x81\xa7message\xa0"))
        assert p.service.state is p.client.state is State.IDLE

    @pytest.mark.parametrize("status", [Status.EMPTY, Status.OK, Status.FAILED, Status.CANCELLED,
                                        Status.RESULT_TOO_LARGE, 99])
    def test_O2_started_with_a_non_start_status_rejected(self, status: int) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        violation(p.service, lambda: p.service.send(m.Started(1, status)),
                  LocalProtocolError, "Started")
        violation(p.client, lambda: feed(p.client, m.Started(1, status)),
                  RemoteProtocolError, "Started")

    def test_O2_started_for_another_op_rejected(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        violation(p.service, lambda: p.service.send(m.Started(2, Status.STARTED)),
                  LocalProtocolError, "Started")
        violation(p.client, lambda: feed(p.client, m.Started(2, Status.STARTED)),
                  RemoteProtocolError, "Started")

    @pytest.mark.parametrize("started", [False, True], ids=["awaiting-start", "running"])
    def test_O2_busy_execute_gets_rejected_busy(self, started: bool) -> None:
        """protocol.md §4 O2 busy: a second EXECUTE is owed STARTED(REJECTED_BUSY)."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        if started:
            p.s2c(m.Started(1, Status.STARTED))
        state = p.service.state
        feed(p.service, m.Execute(2, 0))  # a client that ignores its lock
        assert p.service.state is state
        assert p.service.pending_busy == {2}
        assert p.service.last_op_id == 2 and p.service.current_op_id == 1
        p.service.send(m.Started(2, Status.REJECTED_BUSY))  # the busy reply is allowed
        assert p.service.state is state and p.service.pending_busy == frozenset()
        if not started:
            p.service.send(m.Started(1, Status.STARTED))
        p.service.send(m.Progress(1, 10))
        p.service.send(m.Done(1, Status.OK))
        assert p.service.state is State.IDLE
        feed(p.service, m.Execute(3, 0))  # the busy id was consumed

    @pytest.mark.parametrize("status", [Status.STARTED, Status.REJECTED_BAD_PARAMS, Status.OK])
    def test_O2_busy_reply_must_be_rejected_busy(self, status: Status) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        feed(p.service, m.Execute(2, 0))
        violation(p.service, lambda: p.service.send(m.Started(2, status)),
                  LocalProtocolError, "Started")

    def test_O2_busy_reply_is_not_a_done_inline(self) -> None:
        p = socket_pair()
        p.c2s(m.ExecuteInline(1, 3, b""))
        p.s2c(m.Started(1, Status.STARTED))
        feed(p.service, m.ExecuteInline(2, 3, b""))
        violation(p.service,
                  lambda: p.service.send(m.DoneInline(2, Status.REJECTED_BUSY, b"")),
                  LocalProtocolError, "DoneInline")

    def test_O2_busy_execute_with_a_reused_id_rejected(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.service, lambda: feed(p.service, m.Execute(1, 0)),
                  RemoteProtocolError, "Execute")

    def test_O2_client_never_sends_a_second_execute(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.client, lambda: p.client.send(m.Execute(2, 0)), LocalProtocolError, "Execute")

    def test_O3_progress_for_another_op_rejected(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.service, lambda: p.service.send(m.Progress(2, 10)),
                  LocalProtocolError, "Progress")
        violation(p.client, lambda: feed(p.client, m.Progress(2, 10)),
                  RemoteProtocolError, "Progress")

    def test_O3_late_progress_of_a_finished_op_accepted_by_the_client(self) -> None:
        """protocol.md §4 O3: a late PROGRESS in IDLE for an old op is ignored."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        p.s2c(m.Done(1, Status.OK))
        feed(p.client, m.Progress(1, 999))
        assert p.client.state is State.IDLE
        violation(p.client, lambda: feed(p.client, m.Progress(2, 10)),
                  RemoteProtocolError, "Progress")

    @pytest.mark.parametrize("status", [Status.EMPTY, Status.STARTED, 12, 0xFFFF_FFFF])
    def test_O4_done_with_a_non_final_status_rejected(self, status: int) -> None:
        """protocol.md §4 O4: DONE needs a final status."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.service, lambda: p.service.send(m.Done(1, status)), LocalProtocolError,
                  "Done")
        violation(p.client, lambda: feed(p.client, m.Done(1, status)), RemoteProtocolError,
                  "Done")
        p = socket_pair()
        p.c2s(m.ExecuteInline(1, 3, b""))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.service, lambda: p.service.send(m.DoneInline(1, status, b"")),
                  LocalProtocolError, "DoneInline")
        violation(p.client, lambda: feed(p.client, m.DoneInline(1, status, b"")),
                  RemoteProtocolError, "DoneInline")

    @pytest.mark.parametrize(
        "status",
        [s for s in Status if s.is_final],
        ids=lambda s: s.name,
    )
    def test_O4_every_final_status_ends_the_op(self, status: Status) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        p.s2c(m.Done(1, status))
        assert p.service.state is p.client.state is State.IDLE

    @pytest.mark.parametrize("make", [memory_pair, socket_pair], ids=["memory", "socket"])
    def test_O4_done_without_started_for_an_op_that_completed_at_once(
        self, make: Callable[[], WirePair]
    ) -> None:
        """protocol.md §4 O2/O4: an op that completed at once skips STARTED."""
        p = make()
        socket = p.client.transport is Transport.SOCKET
        p.c2s(m.ExecuteInline(1, 3, b"") if socket else m.Execute(1, 0))
        p.s2c(m.DoneInline(1, Status.OK, b"\xc4\x00") if socket else m.Done(1, Status.OK))
        assert p.service.state is p.client.state is State.IDLE
        p.c2s(m.ExecuteInline(2, 3, b"") if socket else m.Execute(2, 0))

    def test_O4_no_progress_before_started(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        violation(p.service, lambda: p.service.send(m.Progress(1, 10)),
                  LocalProtocolError, "Progress")
        violation(p.client, lambda: feed(p.client, m.Progress(1, 10)),
                  RemoteProtocolError, "Progress")

    def test_O4_done_for_another_op_rejected(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.service, lambda: p.service.send(m.Done(2, Status.OK)), LocalProtocolError,
                  "Done")
        violation(p.client, lambda: feed(p.client, m.Done(0, Status.OK)), RemoteProtocolError,
                  "Done")

    @pytest.mark.parametrize("started", [False, True], ids=["awaiting-start", "running"])
    def test_O5_cancel_while_in_flight(self, started: bool) -> None:
        """protocol.md §4 O5: the client may cancel the op in flight."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        if started:
            p.s2c(m.Started(1, Status.STARTED))
        p.c2s(m.Cancel(1))
        p.c2s(m.Cancel(1))  # repeated cancels are harmless
        if not started:
            p.s2c(m.Started(1, Status.STARTED))
        p.s2c(m.Done(1, Status.CANCELLED))
        assert p.service.state is p.client.state is State.IDLE

    def test_O5_late_cancel_ignored(self) -> None:
        """protocol.md §4 O5: a CANCEL that arrives after DONE is ignored."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        p.client.send(m.Cancel(1))  # crosses the DONE on the wire
        p.s2c(m.Done(1, Status.OK))
        assert feed(p.service, m.Cancel(1)) == m.Cancel(1)
        assert p.service.state is State.IDLE
        p.c2s(m.Execute(2, 0))
        p.s2c(m.Started(2, Status.STARTED))
        feed(p.service, m.Cancel(1))  # late, for the previous op, while op 2 runs
        assert p.service.state is State.RUNNING and p.service.current_op_id == 2

    @pytest.mark.parametrize("op_id", [0, 1, 5])
    def test_O5_cancel_of_a_never_executed_op_rejected(self, op_id: int) -> None:
        p = memory_pair()
        err = violation(p.service, lambda: feed(p.service, m.Cancel(op_id)),
                        RemoteProtocolError, "Cancel")
        assert "never executed" in str(err)
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        if op_id > 1:
            violation(p.service, lambda: feed(p.service, m.Cancel(op_id)),
                      RemoteProtocolError, "Cancel")

    def test_O5_client_cancels_only_the_op_in_flight(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        violation(p.client, lambda: p.client.send(m.Cancel(2)), LocalProtocolError, "Cancel")
        p = memory_pair()
        violation(p.client, lambda: p.client.send(m.Cancel(1)), LocalProtocolError, "Cancel")

    def test_O6_re_registration(self) -> None:
        """protocol.md §4 O6: fresh blocks in IDLE; op ids continue."""
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        p.s2c(m.Done(1, Status.RESULT_TOO_LARGE))
        bigger = (0x7F00_1000_0000, 1 << 20)
        p.register(PARAM, bigger)
        assert p.service.state is p.client.state is State.IDLE
        assert p.service.param_block == PARAM and p.service.retn_block == bigger
        p.c2s(m.Execute(2, 0))
        p.s2c(m.Started(2, Status.STARTED))
        p.s2c(m.Done(2, Status.OK))

    def test_O6_not_while_an_op_runs(self) -> None:
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        p.s2c(m.Started(1, Status.STARTED))
        violation(p.client, lambda: p.client.send(m.AddrParam(*PARAM)), LocalProtocolError,
                  "AddrParam")
        p = memory_pair()
        p.c2s(m.Execute(1, 0))
        violation(p.service, lambda: feed(p.service, m.AddrParam(*PARAM)),
                  RemoteProtocolError, "AddrParam")

    def test_O6_must_run_to_the_end(self) -> None:
        """protocol.md §4 O6: re-registration is a handshake; EXECUTE mid-way is an error."""
        p = memory_pair()
        p.c2s(m.AddrParam(*PARAM))
        violation(p.service, lambda: feed(p.service, m.Execute(1, 0)),
                  RemoteProtocolError, "Execute")
