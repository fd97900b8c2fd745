"""The reader's side of a mailslot: a kernel socket drained into user space.

Why a drain thread: a Windows mailslot queues messages without blocking its
writers, but an AF_UNIX datagram socket holds only
``net.unix.max_dgram_qlen`` datagrams (10 by default) before senders block.
A daemon thread therefore moves datagrams from the socket into a deque as
fast as they come, so writers never wait for the reader to call ``read``.
The deque is bounded by bytes (``max_queued_bytes``); past that the thread
pauses and the kernel's back-pressure applies again, instead of growing
without limit.

Why reads and ``info`` also drain: every write that has returned is, on
Linux, already in the socket's queue. Draining under the same lock the
thread uses before answering makes ``info()`` exact: the count includes
every completed write, and the next size is the real next message's.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Callable

from aether.errors import InsufficientBufferError, OSAPIError
from aether.osapi import dgram

__all__ = ["MessageQueue", "QueueTimeout"]

RemoteHandler = Callable[[bytes, bool], "bytes | None"]


class QueueTimeout(Exception):
    """No message arrived within the timeout (internal)."""


class QueueClosed(Exception):
    """The queue was closed while waiting (internal)."""


class MessageQueue:
    """Messages of one mailslot, in arrival order, with a drain thread."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_message_size: int,
        max_queued_bytes: int,
        udp: socket.socket | None = None,
        on_remote: RemoteHandler | None = None,
        thread_name: str = "aether-mailslot",
    ) -> None:
        self._sock = sock
        limit = dgram.max_unix_datagram()
        if 0 < max_message_size < limit:
            limit = max_message_size
        self._limit = limit
        self._buffer = dgram.receive_buffer(limit + 1)
        self._max_queued = max_queued_bytes
        self._udp = udp
        self._on_remote = on_remote
        self._messages: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._waker = dgram.Waker()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    # --- the drain thread ---------------------------------------------------

    def _drain_locked(self) -> None:
        """Move every queued datagram into the deque (caller holds the lock)."""
        added = False
        while self._bytes < self._max_queued:
            try:
                n = dgram.recv_nowait_into(self._sock, self._buffer)
            except OSAPIError:
                break
            if n is None:
                break
            if n > self._limit:  # too large (or cut): never a valid message
                self.dropped += 1
                continue
            self._messages.append(self._buffer[:n])
            self._bytes += n
            added = True
        if added:
            self._cond.notify_all()

    def _take_remote(self) -> None:
        assert self._udp is not None
        while True:
            try:
                got = dgram.recv_udp_nowait(self._udp, 2048)
            except OSAPIError:
                return
            if got is None:
                return
            packet, _source, unicast = got
            message = self._on_remote(packet, unicast) if self._on_remote else None
            if message is None:
                continue
            with self._cond:
                if len(message) > self._limit or self._bytes >= self._max_queued:
                    self.dropped += 1
                    continue
                self._messages.append(message)
                self._bytes += len(message)
                self._cond.notify_all()

    def _run(self) -> None:
        fds = [self._sock.fileno(), self._waker.fd]
        if self._udp is not None:
            fds.append(self._udp.fileno())
        while True:
            with self._cond:
                while self._bytes >= self._max_queued and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            try:
                ready = dgram.wait_readable(fds)
            except OSAPIError:
                return
            if self._waker.fd in ready:
                self._waker.clear()
            with self._cond:
                if self._closed:
                    return
                self._drain_locked()
            if self._udp is not None and self._udp.fileno() in ready:
                self._take_remote()

    # --- the reader ---------------------------------------------------------

    def get(self, timeout_ms: int | None, max_size: int | None = None) -> bytes:
        """Remove and return the next message.

        ``timeout_ms`` None waits forever, 0 not at all. With ``max_size``
        a longer next message raises InsufficientBufferError and stays
        queued (so the caller can size a buffer and read again).
        """
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        with self._cond:
            while True:
                if self._closed:
                    raise QueueClosed
                if not self._messages:  # what the kernel holds arrived later
                    self._drain_locked()
                if self._messages:
                    size = len(self._messages[0])
                    if max_size is not None and size > max_size:
                        raise InsufficientBufferError(
                            f"the next message has {size} bytes; the buffer holds {max_size}"
                        )
                    message = self._messages.popleft()
                    was_full = self._bytes >= self._max_queued
                    self._bytes -= size
                    if was_full:
                        self._cond.notify_all()
                        self._waker.wake()
                    return message
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueueTimeout
                self._cond.wait(remaining)

    def peek_state(self) -> tuple[int | None, int]:
        """``(size of the next message or None, number of messages)``, exact."""
        with self._cond:
            self._drain_locked()
            size = len(self._messages[0]) if self._messages else None
            return size, len(self._messages)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        """Stop the thread and drop unread messages (reference 4.31)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._messages.clear()
            self._bytes = 0
            self._cond.notify_all()
        self._waker.wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._waker.close()
        with contextlib.suppress(BufferError, ValueError):
            self._buffer.close()
