r"""Mailslots (seed 004): one reader, many writers, one message per write.

>>> with Mailslot.create(r"\\.\mailslot\app\events") as slot:   # doctest: +SKIP
...     with open_mailslot(r"\\.\mailslot\APP\Events") as writer:
...         writer.write(b"hello")
...     slot.read()
b'hello'

On Linux a local mailslot is an AF_UNIX datagram socket in the per-user
namespace directory, drained by a thread into a user-space queue so writers
never wait for the reader (``_mailslot_queue``); the name belongs to the
creator for as long as it lives, even if it is killed (``_mailslot_store``).
Remote names travel as UDP datagrams (``_mailslot_remote``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import warnings
import weakref
from dataclasses import dataclass

from aether import runtime
from aether.errors import (
    AccessDeniedError,
    ClosedResourceError,
    InvalidHandleError,
    InvalidNameError,
    InvalidParameterError,
    OSAPIError,
    PrimitiveTimeoutError,
)
from aether.osapi import dgram

from . import _mailslot_store as store
from ._mailslot_names import MailslotName
from ._mailslot_queue import MessageQueue, QueueClosed, QueueTimeout
from ._mailslot_remote import (
    REMOTE_MESSAGE_LIMIT,
    RemoteConfig,
    decode_packet,
)
from ._mailslot_writer import (
    MailslotGoneError,
    MailslotWriter,
    MessageTooLargeError,
    open_mailslot,
)

__all__ = [
    "FOREVER",
    "NO_MESSAGE",
    "REMOTE_MESSAGE_LIMIT",
    "Mailslot",
    "MailslotGoneError",
    "MailslotInfo",
    "MailslotName",
    "MailslotStatus",
    "MailslotTimeoutError",
    "MailslotWriter",
    "MessageTooLargeError",
    "RemoteConfig",
    "mailslot_status",
    "open_mailslot",
]

FOREVER = 0xFFFFFFFF  # MAILSLOT_WAIT_FOREVER
NO_MESSAGE = 0xFFFFFFFF  # MAILSLOT_NO_MESSAGE
DEFAULT_MAX_QUEUED_BYTES = 64 << 20


class MailslotTimeoutError(PrimitiveTimeoutError):
    """No message arrived within the read timeout (ERROR_SEM_TIMEOUT, also
    for timeout 0, reference 4.24). Attributes: ``timeout_ms``."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        super().__init__(f"no message within {timeout_ms} ms")


@dataclass(frozen=True)
class MailslotInfo:
    """GetMailslotInfo's answer (reference 4.27).

    Attributes:
        max_message_size: as given at creation (0: any size).
        next_size: size of the next message, or None when there is none.
        message_count: messages waiting.
        read_timeout: milliseconds, or FOREVER.
    """

    max_message_size: int
    next_size: int | None
    message_count: int
    read_timeout: int

    def as_dict(self) -> dict[str, object]:
        return {
            "max_message_size": self.max_message_size,
            "next_size": self.next_size,
            "message_count": self.message_count,
            "read_timeout": "forever" if self.read_timeout == FOREVER else self.read_timeout,
        }


@dataclass(frozen=True)
class MailslotStatus:
    """What any process of the user can learn about a mailslot by name."""

    name: str
    max_message_size: int
    creator_pid: int
    accepts_remote: bool
    udp_port: int

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "max_message_size": self.max_message_size,
            "creator_pid": self.creator_pid,
            "accepts_remote": self.accepts_remote,
            "udp_port": self.udp_port if self.accepts_remote else None,
        }


def _check_timeout(value: int) -> int:
    if value == -1:
        return FOREVER
    if not isinstance(value, int) or not 0 <= value <= FOREVER:
        raise InvalidParameterError(f"invalid read timeout {value!r} (0..0xFFFFFFFF ms)")
    return value


class Mailslot:
    """The reading end of a mailslot, which only its creator holds (4.21).

    Create with :meth:`create`; read with :meth:`read`; close with
    :meth:`close` or ``with``. Closing (or the process exiting, however it
    exits) deletes the mailslot and its unread messages (reference 4.31).
    """

    def __init__(
        self,
        name: MailslotName,
        max_message_size: int,
        read_timeout: int,
        ownership: store.SlotOwnership,
        sock: socket.socket,
        queue: MessageQueue,
        udp: socket.socket | None,
    ) -> None:
        self._name = name
        self._max = max_message_size
        self._timeout = read_timeout
        self._ownership = ownership
        self._sock = sock
        self._queue = queue
        self._udp = udp
        self._lock = threading.Lock()
        self._closed = False
        # at interpreter exit too: the record and socket go, as Windows
        # closes a process's handles when it exits (reference 2.43, 4.31)
        self._finalizer = weakref.finalize(self, _shutdown, ownership, queue, sock, udp)

    @classmethod
    def create(
        cls,
        name: str | MailslotName,
        max_message_size: int = 0,
        read_timeout: int = FOREVER,
        *,
        accept_remote: bool = False,
        remote: RemoteConfig | None = None,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> Mailslot:
        r"""Create a mailslot (CreateMailslot).

        Args:
            name: ``\\.\mailslot\[path\]name``, case-insensitive.
            max_message_size: 0 for any size (up to the local datagram
                limit), else the largest message writers may send.
            read_timeout: ms for each read: 0 returns at once, FOREVER waits.
            accept_remote: also receive ``\\*\`` and ``\\host\`` messages
                over UDP (unauthenticated; off by default, threat T39).
            remote: UDP settings; default :meth:`RemoteConfig.from_env`.
            max_queued_bytes: unread bytes held before writers feel
                back-pressure.

        Raises:
            InvalidNameError: a malformed or remote name (4.3, 4.6).
            AlreadyExistsError: a live mailslot has this name (4.4).
        """
        parsed = MailslotName.parse(name)
        if not parsed.is_local:
            raise InvalidNameError(f"a mailslot can only be created on this machine: {parsed}")
        if not isinstance(max_message_size, int) or not 0 <= max_message_size <= 0xFFFFFFFF:
            raise InvalidParameterError(f"invalid max_message_size {max_message_size!r}")
        timeout = _check_timeout(read_timeout)
        config = remote or RemoteConfig.from_env()
        directory = runtime.namespace_dir("mailslots")
        record = store.SlotRecord(
            max_message_size, os.getpid(), accept_remote, config.port, parsed.text
        )
        ownership, sock = store.create(directory, parsed, record)
        udp = None
        try:
            if accept_remote:
                udp = dgram.udp_receiver(config.bind_address, config.port)
            queue = MessageQueue(
                sock,
                max_message_size=max_message_size,
                max_queued_bytes=max_queued_bytes,
                udp=udp,
                on_remote=_RemoteSorter(parsed).handle if udp is not None else None,
                thread_name=f"aether-mailslot-{parsed.key[:8]}",
            )
        except OSAPIError as exc:
            sock.close()
            if udp is not None:
                udp.close()
            ownership.release()
            raise InvalidParameterError(f"cannot receive remote messages: {exc}") from None
        except BaseException:
            sock.close()
            ownership.release()
            raise
        return cls(parsed, max_message_size, timeout, ownership, sock, queue, udp)

    # --- reading -----------------------------------------------------------

    def read(self, timeout_ms: int | None = None, *, max_size: int | None = None) -> bytes:
        """Remove and return the next whole message (ReadFile, 4.23).

        Args:
            timeout_ms: override :attr:`read_timeout` for this call.
            max_size: a buffer size: a longer next message raises
                InsufficientBufferError and stays queued (4.26).

        Raises:
            MailslotTimeoutError: nothing arrived in time (4.24, 4.25).
            ClosedResourceError: the mailslot is closed.
        """
        timeout = self._timeout if timeout_ms is None else _check_timeout(timeout_ms)
        try:
            return self._queue.get(None if timeout == FOREVER else timeout, max_size)
        except QueueTimeout:
            raise MailslotTimeoutError(timeout) from None
        except QueueClosed:
            raise ClosedResourceError("the mailslot is closed") from None

    def info(self) -> MailslotInfo:
        """Exact state: every write that has returned is counted (4.27, 4.28)."""
        self._check_open()
        next_size, count = self._queue.peek_state()
        return MailslotInfo(self._max, next_size, count, self._timeout)

    @property
    def read_timeout(self) -> int:
        """Milliseconds each read waits (0: none, FOREVER). Settable (4.29)."""
        return self._timeout

    @read_timeout.setter
    def read_timeout(self, value: int) -> None:
        self._check_open()
        self._timeout = _check_timeout(value)

    @property
    def max_message_size(self) -> int:
        return self._max

    @property
    def name(self) -> str:
        return self._name.text

    @property
    def dropped(self) -> int:
        """Datagrams discarded because they were too large (a writer that
        bypassed the size check) or the queue was full of remote ones."""
        return self._queue.dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the mailslot is closed")

    # --- Win32 face hooks --------------------------------------------------

    def _win32_read(self, n: int) -> bytes:
        try:
            return self.read(max_size=n)
        except ClosedResourceError:
            raise InvalidHandleError("the mailslot is closed") from None

    def _win32_write(self, data: bytes) -> int:
        raise AccessDeniedError("a mailslot's server handle cannot write (4.20)")

    # --- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Delete the mailslot: writers then fail, unread messages go. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __enter__(self) -> Mailslot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        return f"<Mailslot {self._name.text!r}{' closed' if self._closed else ''}>"


def _shutdown(
    ownership: store.SlotOwnership,
    queue: MessageQueue,
    sock: socket.socket,
    udp: socket.socket | None,
) -> None:
    ownership.release()  # first, so new writers fail at once
    queue.close()
    sock.close()
    if udp is not None:
        udp.close()


class _RemoteSorter:
    """Keeps remote datagrams for this mailslot; forwards unicast ones meant
    for another local mailslot (see ``_mailslot_remote``)."""

    def __init__(self, name: MailslotName) -> None:
        self._folded = name.folded_path

    def handle(self, packet: bytes, unicast: bool) -> bytes | None:
        decoded = decode_packet(packet)
        if decoded is None:
            return None
        path, payload = decoded
        if path == self._folded:
            return payload
        if unicast:
            with contextlib.suppress(Exception):
                target = MailslotName.parse(f"\\\\.\\mailslot\\{path}")
                if mailslot_status(target).accepts_remote:  # its creator opted in
                    with open_mailslot(target) as writer:
                        writer._send_local(payload, nowait=True)
        return None


def mailslot_status(name: str | MailslotName) -> MailslotStatus:
    """What the record of a live local mailslot says (any process of the user).

    Raises:
        NotFoundError: no live mailslot of this name.
    """
    parsed = MailslotName.parse(name)
    if not parsed.is_local:
        raise InvalidNameError("only local mailslots can be inspected")
    record, _ = store.lookup(runtime.namespace_dir("mailslots"), parsed)
    return MailslotStatus(
        record.name, record.max_message_size, record.creator_pid, record.accepts_remote,
        record.udp_port,
    )
