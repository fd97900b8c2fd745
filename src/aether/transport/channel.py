"""The control channel: one ``AF_UNIX`` ``SOCK_SEQPACKET`` connection.

Wraps the socket so that callers see whole datagrams, bounded waits and
Aether errors: an empty read or a reset is :class:`PeerGoneError`, a wait
that runs out is :class:`AetherTimeoutError`. Sends use ``MSG_NOSIGNAL`` so
a vanished peer can never kill the process with SIGPIPE (threat T28).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

from aether import osapi, wire
from aether.errors import AetherTimeoutError, ClosedResourceError, OSAPIError, PeerGoneError

from .spinning import AdaptiveSpin

RECV_CHUNK = 64 * 1024
# Datagrams up to this size are received in one recvmsg (see _recv_sized);
# below glibc's mmap threshold (128 KiB), so the buffer comes from the heap.
DIRECT_RECV = 64 * 1024
# The largest message of a session that carries payloads outside the socket
# (memory, mapping): a control message with its longest tail, plus one byte
# so that anything longer arrives truncated and is rejected.
CONTROL_LIMIT = wire.CONTROL_SIZE + wire.MAX_TAIL + 1
# Plain ints: the socket module's MSG_* are IntFlag members, and each ``|`` or
# ``&`` on one builds a new enum member (about 1 µs; several per message).
_DONTWAIT = int(socket.MSG_DONTWAIT)
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_TRUNC = int(socket.MSG_TRUNC)
_PEEK = int(socket.MSG_PEEK) | _TRUNC


class Channel:
    """One end of a control connection.

    ``extra_fds`` are watched alongside the socket by :meth:`recv`: when one
    becomes readable (a pidfd whose process exited, an eventfd used as a
    wake-up) ``recv`` returns None and the caller inspects it.
    """

    def __init__(self, sock: socket.socket, *, max_datagram: int = RECV_CHUNK,
                 send_timeout: float | None = None, buffer_size: int = 0) -> None:
        self.sock = sock
        self.max_datagram = max_datagram
        self.send_timeout = send_timeout
        if buffer_size:
            # SEQPACKET datagrams are bounded by the send buffer; ask for room
            # (the kernel caps it at net.core.wmem_max / rmem_max).
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, buffer_size)
                except OSError:
                    pass
        self._send_lock = threading.Lock()
        self._closed = False
        self._pollers: dict[tuple[int, ...], select.poll] = {}
        self._spinning = AdaptiveSpin()
        self._sent_at = 0.0  # perf_counter() of the last send (spinning measures from it)
        self._peek = bytearray(1)
        sock.setblocking(True)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, datagram: bytes) -> None:
        """Send one datagram; a gone peer raises PeerGoneError.

        With ``send_timeout`` set, a peer whose queue stays full that long
        (it stopped reading) is treated as gone: a service thread is never
        stuck behind a client that does not read.
        """
        if self._closed:
            raise ClosedResourceError("channel is closed")
        with self._send_lock:
            if self.send_timeout is None:
                self._sendmsg(datagram, 0)
                return
            if self._sendmsg(datagram, _DONTWAIT):
                return
            deadline = time.monotonic() + self.send_timeout
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLOUT)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerGoneError(
                        f"peer has not read its messages for {self.send_timeout:.1f} s")
                poller.poll(int(remaining * 1000) + 1)
                if self._sendmsg(datagram, _DONTWAIT):
                    return

    def _sendmsg(self, datagram: bytes, flags: int) -> bool:
        """One sendmsg; False if it would block (only with MSG_DONTWAIT)."""
        try:
            self.sock.sendmsg([datagram], [], _NOSIGNAL | flags)
        except BlockingIOError:
            return False
        except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError) as exc:
            raise PeerGoneError(f"peer closed the connection ({exc.strerror})") from None
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise ClosedResourceError("channel is closed") from None
            raise PeerGoneError(f"send failed: {exc.strerror}") from None
        self._sent_at = time.perf_counter()
        return True

    def max_send(self) -> int:
        """Largest datagram this end can send (AF_UNIX: the send buffer less 32)."""
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)) - 32

    def send_with_fds(self, datagram: bytes, fds: list[int]) -> None:
        """Send one datagram with descriptors attached (``SCM_RIGHTS``)."""
        if self._closed:
            raise ClosedResourceError("channel is closed")
        with self._send_lock:
            try:
                osapi.send_fds(self.sock, datagram, fds)
            except OSAPIError as exc:
                raise PeerGoneError(f"sending descriptors failed: {exc}") from None

    def recv_with_fds(self, timeout: float | None, maxfds: int) -> tuple[bytes, list[int]]:
        """Wait up to ``timeout`` for one datagram and the descriptors riding
        along (close-on-exec). ``b""``: the peer closed."""
        if self._closed:
            raise ClosedResourceError("channel is closed")
        if not osapi.wait_readable((self.sock.fileno(),), timeout):
            raise AetherTimeoutError(f"no message within {timeout:.3f} s")
        try:
            data, fds = osapi.recv_fds(self.sock, self.max_datagram, maxfds)
        except OSAPIError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return self._after_reset(self.max_datagram), []
            raise PeerGoneError(f"recv failed: {exc}") from None
        return data, fds

    def send_nowait(self, datagram: bytes) -> bool:
        """Send only if the peer's queue has room now; False if it is full.

        For messages that may be dropped (PROGRESS: the return block holds
        the latest value anyway), so a client that never reads cannot block
        the service's worker."""
        if self._closed:
            raise ClosedResourceError("channel is closed")
        with self._send_lock:
            return self._sendmsg(datagram, _DONTWAIT)

    def try_send(self, datagram: bytes) -> bool:
        """Send, returning False instead of raising if the peer is gone."""
        try:
            self.send(datagram)
        except (PeerGoneError, ClosedResourceError):
            return False
        return True

    def recv(
        self,
        timeout: float | None = None,
        extra_fds: tuple[int, ...] = (),
        size: int | None = None,
        spin: float = 0.0,
    ) -> bytes | None:
        """Wait up to ``timeout`` seconds for one datagram.

        Returns the datagram (``b""`` when the peer closed), or None when one
        of ``extra_fds`` became readable first. Raises AetherTimeoutError when
        the wait runs out.
        """
        if self._closed:
            raise ClosedResourceError("channel is closed")
        want = size or self.max_datagram
        if spin > 0.0:
            data = self._spin(want, spin) if self._spinning.should_spin(spin) else None
            if data is None:
                data = self._wait(want, timeout, extra_fds)
            self._spinning.waited(time.perf_counter() - self._sent_at, spin)
            return data
        return self._wait(want, timeout, extra_fds)

    def _wait(self, want: int, timeout: float | None,
              extra_fds: tuple[int, ...]) -> bytes | None:
        if timeout is None and not extra_fds:
            return self._recv_now(want)
        poller = self._pollers.get(extra_fds)
        if poller is None:
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
            for fd in extra_fds:
                poller.register(fd, select.POLLIN)
            self._pollers[extra_fds] = poller
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
            ready = poller.poll(ms)
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    raise AetherTimeoutError(f"no message within {timeout:.3f} s")
                continue
            fds = {fd for fd, _ in ready}
            if self.sock.fileno() in fds:
                return self._recv_now(want)
            return None

    def _spin(self, size: int, spin: float) -> bytes | None:
        """Poll without sleeping for up to ``spin`` seconds.

        A reply that arrives while we spin costs no wake-up; on this class of
        VM a cross-CPU wake-up costs tens of microseconds, more than the whole
        round trip's own work. Each turn yields the CPU, so a peer that shares
        our CPU still runs. Whether to spin at all is :mod:`.spinning`'s call.
        """
        end = time.perf_counter() + spin
        recv = self._recv_sized
        flag = _DONTWAIT
        yield_cpu = os.sched_yield
        while True:
            try:
                data, flags = recv(size, flag)
            except BlockingIOError:
                if time.perf_counter() >= end:
                    return None
                yield_cpu()
                continue
            except (ConnectionResetError, BrokenPipeError):
                return b""
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise ClosedResourceError("channel is closed") from None
                raise PeerGoneError(f"recv failed: {exc.strerror}") from None
            if flags & _TRUNC:
                return data + b"\0"
            return data

    def _recv_sized(self, size: int, flags: int = 0) -> tuple[bytes, int]:
        """One datagram of at most ``size`` bytes, and recvmsg's flags.

        Up to ``DIRECT_RECV`` bytes, one ``recvmsg(size)``: CPython allocates
        ``size`` bytes from the heap and shrinks the result. Above that (the
        socket transport's payloads, 16 MiB by default) the kernel is asked
        the datagram's length first (``MSG_PEEK | MSG_TRUNC``) and exactly
        that is received: a 16 MiB allocation per message was a fresh
        mapping, faulted and unmapped again (measured: a fifth of the
        service's CPU per call, and TLB shoot-downs across the service's
        threads). One reader per channel, so the peeked datagram is the one
        received. Sessions whose messages are only control messages (the
        memory and mapping transports) set ``max_datagram`` to
        ``CONTROL_LIMIT`` and save the second system call.
        """
        sock = self.sock
        if size <= DIRECT_RECV:
            data, _anc, got, _addr = sock.recvmsg(size, 0, flags)
            return data, got
        length = sock.recv_into(self._peek, 1, _PEEK | flags)
        data, _anc, got, _addr = sock.recvmsg(min(max(length, 1), size), 0, flags)
        return data, got

    def _recv_now(self, size: int) -> bytes:
        try:
            data, flags = self._recv_sized(size)
        except (ConnectionResetError, BrokenPipeError):
            return self._after_reset(size)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise ClosedResourceError("channel is closed") from None
            raise PeerGoneError(f"recv failed: {exc.strerror}") from None
        if flags & _TRUNC:
            # An oversized datagram: report it as one that is too long so the
            # protocol rejects it, never as a silently shortened message.
            return data + b"\0"
        return data

    def _after_reset(self, size: int) -> bytes:
        """ECONNRESET: the peer closed with some of our datagrams unread. The
        kernel reports that once, ahead of what the peer sent before closing
        (a service's ERROR with its reason), which is still queued: return
        that datagram; the next read gives the close."""
        try:
            data, flags = self._recv_sized(size, _DONTWAIT)
        except OSError:
            return b""
        if flags & _TRUNC:
            return data + b"\0"
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    @property
    def closed(self) -> bool:
        return self._closed


def make_wakeup() -> tuple[int, int]:
    """A non-blocking pipe used to wake a thread blocked in Channel.recv."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w
