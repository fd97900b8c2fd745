r"""The writing end of a mailslot (CreateFile on a mailslot name).

Split from :mod:`aether.primitives.mailslots`. A local writer is a datagram
socket connected to the reader's; it learns the maximum message size from
the mailslot's record when opened. A remote writer (``\\*\mailslot\...``,
``\\host\mailslot\...``) sends UDP datagrams of at most 424 bytes.
"""

from __future__ import annotations

import errno
import socket

from aether import runtime
from aether.errors import (
    AccessDeniedError,
    ClosedResourceError,
    InvalidParameterError,
    NoDataError,
    NotFoundError,
    OSAPIError,
    Win32Error,
    WouldBlock,
)
from aether.osapi import dgram

from . import _mailslot_store as store
from ._mailslot_names import MailslotName
from ._mailslot_remote import REMOTE_MESSAGE_LIMIT, RemoteConfig, encode_packet

__all__ = ["MailslotGoneError", "MailslotWriter", "MessageTooLargeError", "open_mailslot"]


class MessageTooLargeError(InvalidParameterError):
    """A write longer than the mailslot accepts. Attributes: ``size``,
    ``limit``. The Windows code for exceeding nMaxMessageSize is
    unconfirmed (reference 4.19); remote writes over 424 bytes fail with
    ERROR_BAD_NETPATH as on Windows (4.14)."""

    def __init__(self, size: int, limit: int, why: str, *, win32_code: int | None = None) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds {why} of {limit}", win32_code=win32_code)


class MailslotGoneError(NoDataError):
    """The mailslot's reader closed or died; this writer is useless now
    (reference 4.32; Windows' code is unconfirmed, Aether uses ERROR_NO_DATA)."""



class MailslotWriter:
    r"""A writing handle (CreateFile on a mailslot name). Thread-safe.

    Local writers learn the mailslot's maximum message size when opened and
    check it on every write; remote writers (``\\*\``, ``\\host\``) send UDP
    datagrams of at most 424 bytes.
    """

    def __init__(
        self,
        name: MailslotName,
        *,
        sock: socket.socket,
        max_message_size: int,
        destination: tuple[str, int] | None,
    ) -> None:
        self._name = name
        self._sock: socket.socket | None = sock
        self._max = max_message_size
        self._destination = destination
        self._limit = dgram.datagram_limit(sock) if destination is None else REMOTE_MESSAGE_LIMIT

    @property
    def name(self) -> str:
        return self._name.text

    @property
    def is_remote(self) -> bool:
        return self._destination is not None

    @property
    def max_message_size(self) -> int:
        """The mailslot's limit (0: any), as learnt at open; remote: 0."""
        return self._max

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send ``data`` as one message (WriteFile, 4.16); b"" is a message too (4.17).

        Returns the number of bytes written (all of them).

        Raises:
            MessageTooLargeError: over the mailslot's maximum, the local
                datagram limit, or 424 bytes for a remote name (4.14, 4.19).
            MailslotGoneError: the reader is gone (4.32).
            ClosedResourceError: this writer is closed.
        """
        payload = bytes(data)
        if self._destination is not None:
            return self._send_remote(payload)
        return self._send_local(payload)

    def _send_local(self, payload: bytes, *, nowait: bool = False) -> int:
        sock = self._sock
        if sock is None:
            raise ClosedResourceError("the mailslot writer is closed")
        size = len(payload)
        if self._max and size > self._max:
            raise MessageTooLargeError(size, self._max, "the mailslot's maximum message size")
        if size > self._limit:
            raise MessageTooLargeError(size, self._limit, "the local datagram limit")
        try:
            dgram.send(sock, payload, nowait=nowait)
        except OSAPIError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise MessageTooLargeError(size, self._limit, "the local datagram limit") from None
            if exc.errno == errno.EAGAIN:
                raise WouldBlock(f"mailslot {self._name.text!r} is full") from None
            raise MailslotGoneError(f"mailslot {self._name.text!r} is gone ({exc})") from None
        return size

    def _send_remote(self, payload: bytes) -> int:
        sock = self._sock
        if sock is None:
            raise ClosedResourceError("the mailslot writer is closed")
        if len(payload) > REMOTE_MESSAGE_LIMIT:
            raise MessageTooLargeError(
                len(payload), REMOTE_MESSAGE_LIMIT, "the remote message limit",
                win32_code=Win32Error.ERROR_BAD_NETPATH,
            )
        assert self._destination is not None
        packet = encode_packet(self._name.folded_path, payload)
        try:
            dgram.sendto(sock, packet, self._destination)
        except OSAPIError as exc:
            raise NotFoundError(
                f"cannot send to {self._name.text!r}: {exc}",
                win32_code=Win32Error.ERROR_BAD_NETPATH,
            ) from None
        return len(payload)

    # --- Win32 face hooks --------------------------------------------------

    def _win32_write(self, data: bytes) -> int:
        return self.write(data)

    def _win32_read(self, n: int) -> bytes:
        raise AccessDeniedError("a mailslot client handle cannot read (4.22)")

    # --- lifetime -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> MailslotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MailslotWriter {self._name.text!r}{' closed' if self.closed else ''}>"


def open_mailslot(
    name: str | MailslotName, *, remote: RemoteConfig | None = None
) -> MailslotWriter:
    r"""Open a mailslot for writing (CreateFile with OPEN_EXISTING).

    Raises:
        InvalidNameError: a malformed name.
        NotFoundError: no live local mailslot of this name (4.11), or a
            remote host that cannot be resolved (ERROR_BAD_NETPATH).
    """
    parsed = MailslotName.parse(name)
    if parsed.is_local:
        record, sock_name = store.lookup(runtime.namespace_dir("mailslots"), parsed)
        try:
            sock = dgram.connect_unix_dgram(runtime.namespace_dir("mailslots"), sock_name)
        except OSAPIError as exc:
            raise NotFoundError(f"no mailslot named {parsed.text!r} ({exc})") from None
        return MailslotWriter(
            parsed, sock=sock, max_message_size=record.max_message_size, destination=None
        )
    config = remote or RemoteConfig.from_env()
    if parsed.is_broadcast:
        destination = (config.broadcast_address, config.port)
    else:
        try:
            destination = dgram.resolve_ipv4(parsed.server, config.port)
        except OSAPIError as exc:
            raise NotFoundError(str(exc), win32_code=Win32Error.ERROR_BAD_NETPATH) from None
    sock = dgram.udp_sender(broadcast=parsed.is_broadcast)
    return MailslotWriter(parsed, sock=sock, max_message_size=0, destination=destination)
