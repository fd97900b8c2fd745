"""Datagram sockets for mailslots: AF_UNIX locally, UDP between machines.

AF_UNIX ``SOCK_DGRAM`` keeps message boundaries, is reliable and ordered per
sender on Linux, and carries zero-length messages; it is what Wine uses for
mailslots. Two Linux details shape this module:

- ``sun_path`` holds only 108 bytes, and namespace directories can be deep
  (tests use long temporary paths), so sockets are bound and reached as
  ``/proc/self/fd/<dirfd>/<name>``, which is short whatever the directory;
- the largest datagram is the sender's ``SO_SNDBUF`` minus 32 bytes, and the
  kernel caps ``SO_SNDBUF`` at twice ``net.core.wmem_max`` for ordinary
  users: :func:`max_unix_datagram` says what that allows here.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from aether.errors import OSAPIError

from ._libc import translate

_IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def max_unix_datagram() -> int:
    """The largest AF_UNIX datagram an unprivileged sender can send here."""
    try:
        with open("/proc/sys/net/core/wmem_max", encoding="ascii") as fh:
            wmem_max = int(fh.read().strip())
    except (OSError, ValueError):
        wmem_max = 212992
    return 2 * wmem_max - 32


@contextlib.contextmanager
def _short_path(directory: Path, name: str) -> Iterator[str]:
    fd = -1
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        yield f"/proc/self/fd/{fd}/{name}"
    except OSError as exc:
        raise translate(exc, f"open {directory}") from None
    finally:
        if fd >= 0:
            os.close(fd)


def bind_unix_dgram(directory: Path, name: str, mode: int = 0o600) -> socket.socket:
    """A datagram socket bound at ``directory/name`` (which must not exist)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        with _short_path(directory, name) as path:
            sock.bind(path)
            os.chmod(path, mode)
    except OSError as exc:
        sock.close()
        raise translate(exc, f"bind {directory / name}") from None
    return sock


def connect_unix_dgram(directory: Path, name: str, sndbuf: int = 4 << 20) -> socket.socket:
    """A blocking datagram socket connected to ``directory/name``, with the
    largest send buffer the system grants (it bounds the message size)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        with _short_path(directory, name) as path:
            sock.connect(path)
    except OSError as exc:
        sock.close()
        raise translate(exc, f"connect {directory / name}") from None
    return sock


def datagram_limit(sock: socket.socket) -> int:
    """The largest datagram ``sock`` can send (``SO_SNDBUF`` - 32)."""
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)) - 32


def send(sock: socket.socket, data: bytes | memoryview, *, nowait: bool = False) -> int:
    """Send one datagram on a connected socket."""
    try:
        return sock.send(data, socket.MSG_DONTWAIT if nowait else 0)
    except OSError as exc:
        raise translate(exc, "send") from None


def sendto(sock: socket.socket, data: bytes, address: tuple[str, int]) -> int:
    try:
        return sock.sendto(data, address)
    except OSError as exc:
        raise translate(exc, f"sendto {address[0]}:{address[1]}") from None


def recv_nowait_into(sock: socket.socket, buffer: mmap.mmap | bytearray) -> int | None:
    """Receive one datagram into ``buffer`` without waiting.

    Returns its *real* length (``MSG_TRUNC``; larger than the buffer means it
    was cut and the rest discarded), or None if nothing is queued.
    """
    try:
        return sock.recv_into(buffer, len(buffer), socket.MSG_DONTWAIT | socket.MSG_TRUNC)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise translate(exc, "recv") from None


def receive_buffer(size: int) -> mmap.mmap:
    """A receive buffer whose untouched pages cost no memory (anonymous mmap)."""
    return mmap.mmap(-1, max(size, 1))


def udp_receiver(bind_address: str, port: int) -> socket.socket:
    """A UDP socket on ``bind_address:port`` shared with other receivers
    (``SO_REUSEADDR``: every one of them gets broadcasts) that reports each
    datagram's destination (``IP_PKTINFO``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind((bind_address, port))
    except OSError as exc:
        sock.close()
        raise translate(exc, f"bind udp {bind_address}:{port}") from None
    return sock


def udp_sender(*, broadcast: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    if broadcast:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    return sock


def recv_udp_nowait(
    sock: socket.socket, size: int
) -> tuple[bytes, tuple[str, int], bool] | None:
    """One UDP datagram: ``(data, source, unicast)`` or None if none queued.

    ``unicast`` is False when the datagram was sent to a broadcast address:
    for unicast delivery the kernel reports the destination as the local
    address it arrived on (``ipi_spec_dst == ipi_addr``).
    """
    try:
        data, ancdata, _flags, source = sock.recvmsg(size, 64, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise translate(exc, "recvmsg udp") from None
    unicast = True
    for level, kind, payload in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(payload) >= _IN_PKTINFO.size:
            _ifindex, spec_dst, addr = _IN_PKTINFO.unpack_from(payload)
            unicast = spec_dst == addr
    return data, source, unicast


def resolve_ipv4(host: str, port: int) -> tuple[str, int]:
    """The IPv4 address of ``host`` (``EHOSTUNREACH``-style OSAPIError if none)."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise OSAPIError(
            errno.EHOSTUNREACH, f"cannot resolve {host}: {exc}", call="getaddrinfo"
        ) from None
    address = infos[0][4]
    return str(address[0]), int(address[1])


class Waker:
    """An eventfd that wakes a thread blocked in :func:`wait_readable`."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_write(self.fd, 1)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_read(self.fd)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def wait_readable(fds: list[int], timeout_ms: int = -1) -> list[int]:
    """Block until some of ``fds`` are readable; returns those."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    try:
        events = poller.poll(timeout_ms)
    except InterruptedError:
        return []
    except OSError as exc:
        raise translate(exc, "poll") from None
    return [fd for fd, _ in events]
