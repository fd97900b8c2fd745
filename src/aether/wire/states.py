"""The protocol's states and its transition tables.

Theory of operation (``docs/protocol.md`` sections 3 and 4): a session is
one connection. The service greets with HELLO; the client either registers
two memory blocks (CLIENT_PID, ADDR_PARAM, ADDR_RETN, IPC_TEST), selects
the socket transport (SOCKET_MODE) or the mapping transport (MAP_MODE).
The service answers TEST_DONE (MAP_READY with the memfd for mapping) and
the client TEST_VERIFIED, and the session is IDLE. On the mapping transport
the operations then run through the rings (:mod:`aether.wire.rings`), not
through these tables. From IDLE
one operation runs at a time: EXECUTE, STARTED, PROGRESS*, DONE (an
operation that completes at once may skip STARTED and PROGRESS). CANCEL may
be sent while it runs; a late CANCEL for a finished op is ignored. ERROR and
GOODBYE end the session from any state.

The tables below are the whole truth: ``(direction, event type) -> next
state``. Anything not listed is a protocol error. Guards that depend on
values (op ids, statuses) live in :mod:`aether.wire.connection`.
"""

from __future__ import annotations

import enum
from typing import Final

from . import messages as m


class State(enum.Enum):
    # handshake, service side
    SEND_HELLO = "SEND_HELLO"
    WAIT_CLIENT_PID = "WAIT_CLIENT_PID"
    WAIT_ADDR_PARAM = "WAIT_ADDR_PARAM"
    WAIT_ADDR_RETN = "WAIT_ADDR_RETN"
    WAIT_IPC_TEST = "WAIT_IPC_TEST"
    TESTING = "TESTING"
    WAIT_VERIFIED = "WAIT_VERIFIED"
    # handshake, client side
    WAIT_HELLO = "WAIT_HELLO"
    SEND_CLIENT_PID = "SEND_CLIENT_PID"
    SEND_ADDR_PARAM = "SEND_ADDR_PARAM"
    SEND_ADDR_RETN = "SEND_ADDR_RETN"
    SEND_IPC_TEST = "SEND_IPC_TEST"
    WAIT_TEST_DONE = "WAIT_TEST_DONE"
    VERIFYING = "VERIFYING"
    # operations, both sides
    IDLE = "IDLE"
    AWAIT_START = "AWAIT_START"
    RUNNING = "RUNNING"
    # terminal
    CLOSED = "CLOSED"
    ERROR = "ERROR"

    def __repr__(self) -> str:
        return self.value


HANDSHAKE_STATES: Final = frozenset(
    {
        State.SEND_HELLO, State.WAIT_CLIENT_PID, State.WAIT_ADDR_PARAM, State.WAIT_ADDR_RETN,
        State.WAIT_IPC_TEST, State.TESTING, State.WAIT_VERIFIED, State.WAIT_HELLO,
        State.SEND_CLIENT_PID, State.SEND_ADDR_PARAM, State.SEND_ADDR_RETN,
        State.SEND_IPC_TEST, State.WAIT_TEST_DONE, State.VERIFYING,
    }
)

SEND: Final = "send"
RECV: Final = "recv"

Table = dict[State, dict[tuple[str, type[m.Event]], State]]

# Step numbers refer to docs/protocol.md section 3 (handshake) and 4 (operation).
SERVICE_TABLE: Final[Table] = {
    State.SEND_HELLO: {(SEND, m.Hello): State.WAIT_CLIENT_PID},  # H1
    State.WAIT_CLIENT_PID: {
        (RECV, m.ClientPid): State.WAIT_ADDR_PARAM,  # H3
        (RECV, m.SocketMode): State.TESTING,  # S1
        (RECV, m.MapMode): State.TESTING,  # M1
    },
    State.WAIT_ADDR_PARAM: {(RECV, m.AddrParam): State.WAIT_ADDR_RETN},  # H4
    State.WAIT_ADDR_RETN: {(RECV, m.AddrRetn): State.WAIT_IPC_TEST},  # H5
    State.WAIT_IPC_TEST: {(RECV, m.IpcTest): State.TESTING},  # H6
    State.TESTING: {
        (SEND, m.TestDone): State.WAIT_VERIFIED,  # H7
        (SEND, m.MapReady): State.WAIT_VERIFIED,  # M2
    },
    State.WAIT_VERIFIED: {(RECV, m.TestVerified): State.IDLE},  # H8
    State.IDLE: {
        (RECV, m.Execute): State.AWAIT_START,  # O1
        (RECV, m.ExecuteInline): State.AWAIT_START,  # O1 (socket)
        (RECV, m.AddrParam): State.WAIT_ADDR_RETN,  # O6 re-registration
        (RECV, m.MapMode): State.TESTING,  # M4 larger rings
        (RECV, m.Cancel): State.IDLE,  # O5 late cancel, ignored
    },
    State.AWAIT_START: {
        (SEND, m.Started): State.RUNNING,  # O2 (rejection: -> IDLE, see guards)
        (SEND, m.Done): State.IDLE,  # O4 an op that completed at once needs no STARTED
        (SEND, m.DoneInline): State.IDLE,  # O2 rejection or immediate result (socket)
        (RECV, m.Cancel): State.AWAIT_START,  # O5
        (RECV, m.Execute): State.AWAIT_START,  # O2 busy
        (RECV, m.ExecuteInline): State.AWAIT_START,  # O2 busy
    },
    State.RUNNING: {
        (SEND, m.Progress): State.RUNNING,  # O3
        (SEND, m.Done): State.IDLE,  # O4
        (SEND, m.DoneInline): State.IDLE,  # O4 (socket)
        (SEND, m.Started): State.RUNNING,  # O2 busy reply to a second EXECUTE
        (RECV, m.Cancel): State.RUNNING,  # O5
        (RECV, m.Execute): State.RUNNING,  # O2 busy
        (RECV, m.ExecuteInline): State.RUNNING,  # O2 busy
    },
}

CLIENT_TABLE: Final[Table] = {
    State.WAIT_HELLO: {(RECV, m.Hello): State.SEND_CLIENT_PID},  # H2
    State.SEND_CLIENT_PID: {
        (SEND, m.ClientPid): State.SEND_ADDR_PARAM,  # H3
        (SEND, m.SocketMode): State.WAIT_TEST_DONE,  # S1
        (SEND, m.MapMode): State.WAIT_TEST_DONE,  # M1
    },
    State.SEND_ADDR_PARAM: {(SEND, m.AddrParam): State.SEND_ADDR_RETN},  # H4
    State.SEND_ADDR_RETN: {(SEND, m.AddrRetn): State.SEND_IPC_TEST},  # H5
    State.SEND_IPC_TEST: {(SEND, m.IpcTest): State.WAIT_TEST_DONE},  # H6
    State.WAIT_TEST_DONE: {
        (RECV, m.TestDone): State.VERIFYING,  # H7
        (RECV, m.MapReady): State.VERIFYING,  # M2
    },
    State.VERIFYING: {(SEND, m.TestVerified): State.IDLE},  # H8
    State.IDLE: {
        (SEND, m.Execute): State.AWAIT_START,  # O1
        (SEND, m.ExecuteInline): State.AWAIT_START,  # O1 (socket)
        (SEND, m.AddrParam): State.SEND_ADDR_RETN,  # O6
        (SEND, m.MapMode): State.WAIT_TEST_DONE,  # M4 larger rings
        (RECV, m.Progress): State.IDLE,  # O5 late progress of a finished op
    },
    State.AWAIT_START: {
        (RECV, m.Started): State.RUNNING,  # O2
        (RECV, m.Done): State.IDLE,  # O4 completed at once, no STARTED
        (RECV, m.DoneInline): State.IDLE,  # O2 rejection or immediate result (socket)
        (SEND, m.Cancel): State.AWAIT_START,  # O5
    },
    State.RUNNING: {
        (RECV, m.Progress): State.RUNNING,  # O3
        (RECV, m.Done): State.IDLE,  # O4
        (RECV, m.DoneInline): State.IDLE,  # O4 (socket)
        (SEND, m.Cancel): State.RUNNING,  # O5
    },
}

# Allowed from any live state, for both roles.
ANY_STATE: Final[dict[tuple[str, type[m.Event]], State]] = {
    (SEND, m.Error): State.CLOSED,
    (RECV, m.Error): State.CLOSED,
    (SEND, m.Goodbye): State.CLOSED,
    (RECV, m.Goodbye): State.CLOSED,
    (RECV, m.ConnectionClosed): State.CLOSED,
}
