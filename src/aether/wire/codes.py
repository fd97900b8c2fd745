"""Numbers on the wire: control codes, statuses, error codes, limits.

Control codes keep the seed's names and sit in the Windows user-defined
service-control range 128-255 (see ``docs/protocol.md`` section 2).
"""

from __future__ import annotations

import enum
from typing import Final

PROTOCOL_VERSION: Final = 1
PATTERN: Final = 0x1337D00D
CONTROL_SIZE: Final = 24
HEADER_SIZE: Final = 32
MAX_TAIL: Final = 4096  # longest text/progress tail a control message may carry
DEFAULT_BLOCK_SIZE: Final = 64 * 1024
MAX_BLOCK_SIZE: Final = 16 * 1024 * 1024


class Code(enum.IntEnum):
    """Control message codes (``docs/protocol.md`` section 2)."""

    HELLO = 0x80
    CLIENT_PID = 0x81
    ADDR_PARAM = 0x82
    ADDR_RETN = 0x83
    IPC_TEST = 0x84
    TEST_DONE = 0x85
    TEST_VERIFIED = 0x86
    EXECUTE = 0x90
    CANCEL = 0x91
    STARTED = 0xA0
    PROGRESS = 0xA1
    DONE = 0xA2
    ERROR = 0xAF
    GOODBYE = 0xB0
    # mapping transport (rings in a memfd passed with SCM_RIGHTS)
    MAP_MODE = 0xC0
    MAP_READY = 0xC1
    # socket transport (payload inside the control messages)
    SOCKET_MODE = 0xC8
    EXECUTE_INLINE = 0xC9
    DONE_INLINE = 0xCA


class FrameKind(enum.IntEnum):
    """Kinds of the frames in the mapping transport's rings (0xC2-0xC7)."""

    EXECUTE = 0xC2  # request ring: op id, op code, parameter payload
    CANCEL = 0xC3  # request ring: op id
    STARTED = 0xC4  # reply ring: op id, status STARTED or REJECTED_BUSY
    PROGRESS = 0xC5  # reply ring: op id, permille, msgpack ProgressInfo
    DONE = 0xC6  # reply ring: op id, final status, result or ErrorInfo payload
    WRAP = 0xC7  # either ring: the rest of the ring is unused, continue at offset 0


class Transport(enum.IntFlag):
    """Transports a service offers (HELLO flags) or a session uses."""

    MEMORY = 1
    SOCKET = 2
    MAPPING = 4


class Status(enum.IntEnum):
    """Operation status, in the return block header and STARTED/DONE messages.

    EMPTY is 0 so that a block the handshake zeroed never reads as success.
    """

    EMPTY = 0
    OK = 1
    STARTED = 2
    REJECTED_BAD_PARAMS = 3
    REJECTED_UNKNOWN_OP = 4
    REJECTED_UNAUTHORIZED = 5
    REJECTED_BUSY = 6
    LIMITS_EXCEEDED = 7
    FAILED = 8
    CANCELLED = 9
    TIMED_OUT = 10
    RESULT_TOO_LARGE = 11

    @property
    def is_final(self) -> bool:
        return self not in (Status.EMPTY, Status.STARTED)

    @property
    def is_rejection(self) -> bool:
        return self in (
            Status.REJECTED_BAD_PARAMS,
            Status.REJECTED_UNKNOWN_OP,
            Status.REJECTED_UNAUTHORIZED,
            Status.REJECTED_BUSY,
            Status.LIMITS_EXCEEDED,
        )


class ErrorCode(enum.IntEnum):
    """``a`` of ERROR, TEST_DONE and TEST_VERIFIED (0 = no error)."""

    NONE = 0
    PROTOCOL = 1
    VERSION_MISMATCH = 2
    PID_MISMATCH = 3
    BAD_BLOCK = 4
    BLOCK_TOO_LARGE = 5
    PATTERN_MISMATCH = 6
    MEMORY_ACCESS = 7
    UNSUPPORTED_TRANSPORT = 8
    HANDSHAKE_TIMEOUT = 9
    LIMITS_EXCEEDED = 10
    SHUTTING_DOWN = 11
    INTERNAL = 12
    ZEROS_MISSING = 13
    IDLE_TIMEOUT = 14
    PEER_EXITED = 15


class GoodbyeReason(enum.IntEnum):
    NORMAL = 0
    SHUTDOWN = 1
    ERROR = 2
