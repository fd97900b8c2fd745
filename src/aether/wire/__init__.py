"""Aether's wire protocol, sans-IO: messages, block layouts, state machines.

Nothing here performs I/O, reads a clock or starts a thread; see
``docs/protocol.md`` for the specification this package implements.
"""

from .blocks import (
    BlockSpec as BlockSpec,
    ParamHeader as ParamHeader,
    ReturnHeader as ReturnHeader,
    check_block as check_block,
    check_pair as check_pair,
    check_param_header as check_param_header,
    crc32 as crc32,
)
from .codes import (
    CONTROL_SIZE as CONTROL_SIZE,
    DEFAULT_BLOCK_SIZE as DEFAULT_BLOCK_SIZE,
    HEADER_SIZE as HEADER_SIZE,
    MAX_BLOCK_SIZE as MAX_BLOCK_SIZE,
    MAX_TAIL as MAX_TAIL,
    PATTERN as PATTERN,
    PROTOCOL_VERSION as PROTOCOL_VERSION,
    Code as Code,
    ErrorCode as ErrorCode,
    FrameKind as FrameKind,
    GoodbyeReason as GoodbyeReason,
    Status as Status,
    Transport as Transport,
)
from .connection import ClientProtocol as ClientProtocol, ServiceProtocol as ServiceProtocol
from .crc import (
    crc32_combine as crc32_combine,
    crc32_then as crc32_then,
    crc32_update as crc32_update,
)
from .messages import (
    AddrParam as AddrParam,
    AddrRetn as AddrRetn,
    Cancel as Cancel,
    ClientPid as ClientPid,
    ConnectionClosed as ConnectionClosed,
    Done as Done,
    DoneInline as DoneInline,
    Error as Error,
    Event as Event,
    Execute as Execute,
    ExecuteInline as ExecuteInline,
    Goodbye as Goodbye,
    Hello as Hello,
    IpcTest as IpcTest,
    MapMode as MapMode,
    MapReady as MapReady,
    Progress as Progress,
    SocketMode as SocketMode,
    Started as Started,
    TestDone as TestDone,
    TestVerified as TestVerified,
    decode as decode,
    encode as encode,
)
from .states import State as State
