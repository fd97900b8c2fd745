"""The one exception hierarchy of Aether.

Every error Aether raises derives from :class:`AetherError`. Where a builtin
exception means the same thing, the Aether class also derives from it, so
``except TimeoutError`` or ``except PermissionError`` keep working.

Errors carry their facts as attributes (``step``, ``op_id``, ``status``,
``win32_code`` ...) and build their message from them, so callers can branch
on fields instead of parsing text.

This module imports nothing of Aether's: every layer may import it.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "AccessDeniedError",
    "AetherError",
    "AetherTimeoutError",
    "AlreadyExistsError",
    "AuthorizationError",
    "BrokenResourceError",
    "BusyResourceError",
    "ClosedResourceError",
    "ConnectError",
    "HandshakeError",
    "InsufficientBufferError",
    "InvalidHandleError",
    "InvalidNameError",
    "InvalidParameterError",
    "LimitsExceededError",
    "LocalProtocolError",
    "MoreDataError",
    "NoDataError",
    "NotFoundError",
    "OSAPIError",
    "OperationError",
    "OutcomeUnknownError",
    "PartialTransferError",
    "PeerGoneError",
    "PipeBrokenError",
    "PrimitiveError",
    "PrimitiveTimeoutError",
    "ProtocolError",
    "RemoteProtocolError",
    "SchemaError",
    "UnsupportedError",
    "Win32Error",
    "WouldBlock",
]


class AetherError(Exception):
    """Base class of every error raised by Aether."""


# --------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------


class ProtocolError(AetherError):
    """A peer broke the wire protocol (see ``docs/protocol.md``).

    Attributes:
        state: the state the protocol machine was in, by name.
        event: what was received or sent, by name.
    """

    def __init__(self, message: str, *, state: str = "", event: str = "") -> None:
        self.state = state
        self.event = event
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class HandshakeError(AetherError):
    """The session handshake failed.

    Attributes:
        step: the protocol step (``docs/protocol.md``) where it failed.
        reason: a short machine-readable reason, e.g. ``"pattern-mismatch"``.
        detail: human-readable explanation.
    """

    def __init__(self, step: str, reason: str, detail: str = "") -> None:
        self.step = step
        self.reason = reason
        self.detail = detail
        text = f"handshake failed at step {step}: {reason}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


class SchemaError(AetherError, ValueError):
    """A payload does not match the operation's schema.

    Attributes:
        path: where in the payload, in msgspec's ``$.field[0]`` notation, or "".
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(message)


# --------------------------------------------------------------------------
# Connections and operations
# --------------------------------------------------------------------------


class ConnectError(AetherError, ConnectionError):
    """Could not reach a service, or refused to trust the one we reached."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class PeerGoneError(AetherError, ConnectionError):
    """The peer closed the connection or its process exited."""


class AetherTimeoutError(AetherError, TimeoutError):
    """A bounded wait ran out."""


class OperationError(AetherError):
    """An operation ended in a status other than OK.

    Attributes:
        op_id: the operation id within its session.
        status: the numeric status (``aether.wire.Status``).
        status_name: the status's name, e.g. ``"REJECTED_BAD_PARAMS"``.
        message: what the service said.
        details: any structured details the service sent (e.g. ``needed``).
    """

    def __init__(
        self,
        op_id: int,
        status: int,
        status_name: str,
        message: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        self.op_id = op_id
        self.status = status
        self.status_name = status_name
        self.message = message
        self.details = dict(details or {})
        text = f"operation {op_id} ended with {status_name}"
        if message:
            text += f": {message}"
        super().__init__(text)


class AuthorizationError(OperationError, PermissionError):
    """The service refused the operation for this caller."""


class LimitsExceededError(OperationError):
    """A service limit (sessions, sizes, rates) was exceeded."""


class OutcomeUnknownError(OperationError):
    """The connection was lost while an operation ran: it may or may not have
    taken effect. Never retried automatically."""


class ServiceRestartedError(OutcomeUnknownError):
    """The service stopped or restarted while the operation ran: its outcome
    is unknown (never reported as success). The client opens a new session
    on its next call."""


class ClosedResourceError(AetherError):
    """The object was closed by this process and cannot be used any more."""


class BrokenResourceError(AetherError):
    """The object failed in a way that cannot be recovered; reopen it."""


class BusyResourceError(AetherError):
    """Another operation is already using this resource."""


class WouldBlock(AetherError):
    """A ``*_nowait`` call found nothing to do without blocking."""


# --------------------------------------------------------------------------
# The operating system (raised by aether.osapi only)
# --------------------------------------------------------------------------


class OSAPIError(AetherError, OSError):
    """A system call failed.

    Attributes:
        errno: the C errno (as on ``OSError``).
        call: the system call or operation that failed.
    """

    def __init__(self, errno: int, message: str, *, call: str = "") -> None:
        super().__init__(errno, message)
        self.call = call

    def __str__(self) -> str:
        prefix = f"{self.call}: " if self.call else ""
        return f"{prefix}{self.strerror} [errno {self.errno}]"


class PartialTransferError(OSAPIError):
    """A read or write of another process's memory moved fewer bytes than asked."""


class UnsupportedError(OSAPIError):
    """The kernel or platform lacks a feature Aether needs for this path."""


# --------------------------------------------------------------------------
# Seed-004 primitives: errors that carry their Win32 equivalent
# --------------------------------------------------------------------------


class Win32Error(enum.IntEnum):
    """Win32 error numbers (``winerror.h``) used by the primitives."""

    ERROR_SUCCESS = 0
    ERROR_FILE_NOT_FOUND = 2
    ERROR_PATH_NOT_FOUND = 3
    ERROR_ACCESS_DENIED = 5
    ERROR_INVALID_HANDLE = 6
    ERROR_NOT_ENOUGH_MEMORY = 8
    ERROR_SHARING_VIOLATION = 32
    ERROR_BAD_NETPATH = 53
    ERROR_INVALID_PARAMETER = 87
    ERROR_BROKEN_PIPE = 109
    ERROR_DISK_FULL = 112
    ERROR_CALL_NOT_IMPLEMENTED = 120
    ERROR_SEM_TIMEOUT = 121
    ERROR_INSUFFICIENT_BUFFER = 122
    ERROR_INVALID_NAME = 123
    ERROR_ALREADY_EXISTS = 183
    ERROR_FILENAME_EXCED_RANGE = 206
    ERROR_BAD_PIPE = 230
    ERROR_NO_DATA = 232
    ERROR_PIPE_NOT_CONNECTED = 233
    ERROR_MORE_DATA = 234
    ERROR_PARTIAL_COPY = 299
    ERROR_INVALID_ADDRESS = 487
    ERROR_NOACCESS = 998
    ERROR_FILE_INVALID = 1006
    ERROR_MAPPED_ALIGNMENT = 1132


class PrimitiveError(AetherError):
    """A seed-004 primitive (atom, mapping, pipe, mailslot) call failed.

    Attributes:
        win32_code: the Win32 error number Windows would report.
        win32_name: its ``ERROR_*`` name.
    """

    default_code: Win32Error = Win32Error.ERROR_INVALID_PARAMETER

    def __init__(self, message: str, *, win32_code: int | None = None) -> None:
        code = Win32Error(win32_code) if win32_code is not None else self.default_code
        self.win32_code = int(code)
        self.win32_name = code.name
        super().__init__(f"{message} [{code.name} ({int(code)})]")


class InvalidParameterError(PrimitiveError, ValueError):
    default_code = Win32Error.ERROR_INVALID_PARAMETER


class InvalidNameError(PrimitiveError, ValueError):
    default_code = Win32Error.ERROR_INVALID_NAME


class InvalidHandleError(PrimitiveError, ValueError):
    default_code = Win32Error.ERROR_INVALID_HANDLE


class NotFoundError(PrimitiveError, FileNotFoundError):
    default_code = Win32Error.ERROR_FILE_NOT_FOUND


class AlreadyExistsError(PrimitiveError, FileExistsError):
    default_code = Win32Error.ERROR_ALREADY_EXISTS


class AccessDeniedError(PrimitiveError, PermissionError):
    default_code = Win32Error.ERROR_ACCESS_DENIED


class InsufficientBufferError(PrimitiveError):
    default_code = Win32Error.ERROR_INSUFFICIENT_BUFFER


class MoreDataError(PrimitiveError):
    default_code = Win32Error.ERROR_MORE_DATA


class PipeBrokenError(PrimitiveError, BrokenPipeError):
    default_code = Win32Error.ERROR_BROKEN_PIPE


class NoDataError(PrimitiveError, BrokenPipeError):
    """Writing to a pipe or mailslot whose reader is gone."""

    default_code = Win32Error.ERROR_NO_DATA


class PrimitiveTimeoutError(PrimitiveError, TimeoutError):
    default_code = Win32Error.ERROR_SEM_TIMEOUT
