"""A raw peer of the control protocol, for hostile tests.

Speaks ``docs/protocol.md`` directly over ``AF_UNIX`` ``SOCK_SEQPACKET`` with
:mod:`aether.wire` (never through ``aether.Client``), so a test can send any
message in any order, lie in any field, or stop anywhere. Also used by the
helper processes under ``peers/`` (they put this directory on ``sys.path``).

Memory comes from an :class:`Arena`: one private anonymous mapping laid out
as ``canary | parameter block | canary | return block | canary``. The canary
pages hold random bytes; if the service ever wrote one byte outside the two
registered blocks, :meth:`Arena.canaries_intact` says so.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import mmap
import os
import select
import socket
import struct
import sys
import time
from typing import Any

from aether import wire
from aether.wire import ErrorCode, ParamHeader, ReturnHeader, Status, messages as m

PAGE = mmap.PAGESIZE
PROT_NONE = 0
PROT_READ = mmap.PROT_READ
PROT_WRITE = mmap.PROT_WRITE
PROT_EXEC = mmap.PROT_EXEC
MAP_SHARED = mmap.MAP_SHARED
MAP_PRIVATE = mmap.MAP_PRIVATE
MAP_ANONYMOUS = mmap.MAP_ANONYMOUS
MAP_FIXED = 0x10
MAP_FIXED_NOREPLACE = 0x100000
PATTERN_WORD = struct.pack("<I", wire.PATTERN)
DEFAULT_BLOCK = 4 * PAGE  # small blocks keep the hostile suite fast
RECV_MAX = 1 << 21

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_MAP_FAILED = ctypes.c_void_p(-1).value


# -- raw memory --------------------------------------------------------------------------
def _oserror(call: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{call}: {os.strerror(err)}")


def map_memory(size: int, prot: int = PROT_READ | PROT_WRITE,
               flags: int = MAP_PRIVATE | MAP_ANONYMOUS, fd: int = -1,
               address: int = 0) -> int:
    """mmap(2) returning the raw address (``address`` with MAP_FIXED_NOREPLACE)."""
    if address:
        flags |= MAP_FIXED_NOREPLACE
    addr = _libc.mmap(address or None, size, prot, flags, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        raise _oserror("mmap")
    if address and addr != address:  # kernels before 4.17 ignore the flag
        _libc.munmap(addr, size)
        raise OSError(errno.EEXIST, f"mmap: wanted 0x{address:x}, got 0x{addr:x}")
    return int(addr)


def remap_fixed(address: int, size: int, prot: int, flags: int, fd: int = -1) -> None:
    """Replace whatever is mapped at ``address`` (MAP_FIXED)."""
    addr = _libc.mmap(address, size, prot, flags | MAP_FIXED, fd, 0)
    if addr is None or addr == _MAP_FAILED or addr != address:
        raise _oserror("mmap(MAP_FIXED)")


def unmap(address: int, size: int) -> None:
    if _libc.munmap(address, size) != 0:
        raise _oserror("munmap")


def protect(address: int, size: int, prot: int) -> None:
    if _libc.mprotect(address, size, prot) != 0:
        raise _oserror("mprotect")


def peek(address: int, size: int) -> bytes:
    return ctypes.string_at(address, size)


def poke(address: int, data: bytes) -> None:
    ctypes.memmove(address, data, len(data))


def set_child_subreaper() -> None:
    if _libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise _oserror("prctl(PR_SET_CHILD_SUBREAPER)")


def mapped_in_self(address: int, size: int) -> bool:
    """True if any byte of [address, address+size) is mapped in this process."""
    with open("/proc/self/maps", encoding="ascii") as fh:
        for line in fh:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo < address + size and address < hi:
                return True
    return False


def free_address(size: int, start: int = 0x3000_0000_0000) -> int:
    """A page-aligned address range unmapped in this process (for fixed mappings)."""
    addr = start
    while mapped_in_self(addr, size):
        addr += 1 << 30
    return addr


class Arena:
    """``canary | param | canary | retn | canary`` in one private anonymous mapping.

    Both blocks are filled with 0x1337D00D; the parameter block is made
    read-only (seed step 1). ``address`` places the arena at a fixed address
    (MAP_FIXED_NOREPLACE), so two processes can hold the same layout.
    """

    def __init__(self, param_size: int = DEFAULT_BLOCK, retn_size: int = DEFAULT_BLOCK, *,
                 address: int = 0, prot_extra: int = 0) -> None:
        self.param_size = param_size
        self.retn_size = retn_size
        self.total = PAGE + param_size + PAGE + retn_size + PAGE
        self.base = map_memory(self.total, PROT_READ | PROT_WRITE | prot_extra, address=address)
        self.param = self.base + PAGE
        self.retn = self.param + param_size + PAGE
        self.canary_ranges = [
            (self.base, PAGE),
            (self.param + param_size, PAGE),
            (self.retn + retn_size, PAGE),
        ]
        self._canaries = []
        for addr, size in self.canary_ranges:
            data = os.urandom(size)
            poke(addr, data)
            self._canaries.append(data)
        poke(self.param, PATTERN_WORD * (param_size // 4))
        poke(self.retn, PATTERN_WORD * (retn_size // 4))
        protect(self.param, param_size, PROT_READ | prot_extra)
        self._closed = False

    # -- inspection ---------------------------------------------------------------
    def canaries_intact(self) -> bool:
        return all(peek(a, n) == want
                   for (a, n), want in zip(self.canary_ranges, self._canaries, strict=True))

    def param_bytes(self) -> bytes:
        return peek(self.param, self.param_size)

    def retn_bytes(self) -> bytes:
        return peek(self.retn, self.retn_size)

    def holds_pattern(self) -> bool:
        return (self.param_bytes() == PATTERN_WORD * (self.param_size // 4)
                and self.retn_bytes() == PATTERN_WORD * (self.retn_size // 4))

    def holds_zeros(self) -> bool:
        return (self.param_bytes() == bytes(self.param_size)
                and self.retn_bytes() == bytes(self.retn_size))

    def digest(self) -> str:
        """Hash of the whole arena (blocks and canaries)."""
        return hashlib.sha256(peek(self.base, self.total)).hexdigest()

    # -- operations (docs/protocol.md O1, O4) --------------------------------------
    def write_params(self, op_id: int, op_code: int, payload: bytes, *,
                     length: int | None = None, crc: int | None = None,
                     reserved: int = 0) -> None:
        """Payload, then header, then read-only again (O1); fields may lie."""
        if wire.HEADER_SIZE + len(payload) > self.param_size:
            raise ValueError(f"payload of {len(payload)} bytes does not fit the block")
        header = struct.pack(
            "<QIIIIQ", op_id, op_code, len(payload) if length is None else length,
            wire.crc32(payload) if crc is None else crc, 0, reserved,
        )
        protect(self.param, self.param_size, PROT_READ | PROT_WRITE)
        try:
            poke(self.param + wire.HEADER_SIZE, payload)
            poke(self.param, header)
        finally:
            protect(self.param, self.param_size, PROT_READ)

    def read_return(self) -> tuple[ReturnHeader, bytes]:
        header = ReturnHeader.unpack(peek(self.retn, wire.HEADER_SIZE))
        n = min(header.length, self.retn_size - wire.HEADER_SIZE)
        return header, peek(self.retn + wire.HEADER_SIZE, n)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            unmap(self.base, self.total)


# -- the control connection ------------------------------------------------------------
class Closed(Exception):
    """The service closed the connection."""


class RawPeer:
    """One raw connection to a service's control socket."""

    def __init__(self, path: str | os.PathLike[str], *, sock: socket.socket | None = None,
                 connect: bool = True) -> None:
        self.path = os.fspath(path)
        self.sock = sock or socket.socket(socket.AF_UNIX,
                                          socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        if connect:
            self.sock.connect(self.path)
        self.events: list[m.Event] = []  # everything received, in order
        self.resets = 0  # ECONNRESETs seen (the service closed with our data unread)

    def fileno(self) -> int:
        return self.sock.fileno()

    # sending never raises for a gone peer: a hostile test sends after the
    # service may already have closed, and what counts is what it received.
    def send_raw(self, data: bytes) -> bool:
        try:
            self.sock.sendmsg([data], [], socket.MSG_NOSIGNAL)
        except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError):
            return False
        return True

    def send(self, event: m.Event) -> bool:
        return self.send_raw(wire.encode(event))

    def recv_raw(self, timeout: float = 3.0) -> bytes:
        """One datagram (``b""`` when the service closed); TimeoutError if none."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no message from the service within {timeout} s")
        try:
            data, _anc, _flags, _addr = self.sock.recvmsg(RECV_MAX)
        except ConnectionResetError:
            # The service closed with some of our datagrams unread: the kernel
            # reports ECONNRESET once, ahead of what the service sent before
            # closing (its ERROR), which is still queued behind it.
            self.resets += 1
            try:
                data, _anc, _flags, _addr = self.sock.recvmsg(RECV_MAX, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, ConnectionResetError):
                return b""
        return data

    def recv(self, timeout: float = 3.0) -> m.Event:
        data = self.recv_raw(timeout)
        event: m.Event = m.ConnectionClosed() if not data else wire.decode(data)
        self.events.append(event)
        return event

    def expect(self, cls: type[m.Event], timeout: float = 3.0) -> Any:
        event = self.recv(timeout)
        if not isinstance(event, cls):
            raise AssertionError(f"expected {cls.__name__}, got {event!r}")
        return event

    def hello(self, timeout: float = 3.0) -> m.Hello:
        hello: m.Hello = self.expect(m.Hello, timeout)
        return hello

    def outcome(self, timeout: float = 3.0) -> tuple[str, int]:
        """Read until the session ends: ("error", code) / ("test-done", code) /
        ("closed", 0). An ERROR must be followed by the close."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv(max(0.0, deadline - time.monotonic()))
            match event:
                case m.Error(error=code):
                    after = self.recv(max(0.0, deadline - time.monotonic()))
                    if not isinstance(after, m.ConnectionClosed):
                        raise AssertionError(f"ERROR {code} not followed by the close: {after!r}")
                    return "error", code
                case m.TestDone(error=code) if code:
                    after = self.recv(max(0.0, deadline - time.monotonic()))
                    if not isinstance(after, m.ConnectionClosed):
                        raise AssertionError(f"failed TEST_DONE not followed by the close: "
                                             f"{after!r}")
                    return "test-done", code
                case m.ConnectionClosed() | m.Goodbye():
                    return "closed", 0
                case m.Hello() | m.Progress():
                    continue
                case _:
                    raise AssertionError(f"unexpected {event!r} while waiting for the end")

    def expect_error(self, code: ErrorCode, timeout: float = 3.0) -> None:
        """The session must end with ERROR ``code`` and then the close (a)."""
        kind, got = self.outcome(timeout)
        assert (kind, _name(got)) == ("error", code.name), (
            f"expected ERROR {code.name}, got {kind} {_name(got)}; events {self.events}")

    # -- the seed's handshake, done right (docs/protocol.md H1-H8) ---------------------
    def handshake(self, arena: Arena, *, pid: int | None = None) -> m.Hello:
        hello = self.hello()  # H1/H2
        self.send(m.ClientPid(os.getpid() if pid is None else pid))  # H3
        self.send(m.AddrParam(arena.param, arena.param_size))  # H4
        self.send(m.AddrRetn(arena.retn, arena.retn_size))  # H5
        self.send(m.IpcTest())  # H6
        done = self.expect(m.TestDone)  # H7
        if done.error:
            raise AssertionError(f"TEST_DONE error {_name(done.error)}")
        if not arena.holds_zeros():
            raise AssertionError("the service did not write zeros into both blocks")
        self.send(m.TestVerified(0))  # H8
        return hello

    def execute(self, arena: Arena, op_id: int, op_code: int, payload: bytes,
                timeout: float = 5.0) -> tuple[int, ReturnHeader, bytes]:
        """O1-O4 for one operation; returns (final status, return header, payload)."""
        arena.write_params(op_id, op_code, payload)
        self.send(m.Execute(op_id, len(payload)))
        deadline = time.monotonic() + timeout
        first = self.recv(timeout)
        # O2: STARTED (accepted or rejected), or straight to O4's DONE for an
        # operation that completed at once (inline handlers).
        if not isinstance(first, m.Started | m.Done):
            raise AssertionError(f"expected STARTED or DONE, got {first!r}")
        assert first.op_id == op_id, first
        status = first.status
        if isinstance(first, m.Started) and status == Status.STARTED:
            while True:
                event = self.recv(max(0.0, deadline - time.monotonic()))
                if isinstance(event, m.Progress):
                    continue
                if not isinstance(event, m.Done):
                    raise AssertionError(f"expected DONE, got {event!r}")
                assert event.op_id == op_id, event
                status = event.status
                break
        header, data = arena.read_return()
        assert header.op_id == op_id and header.status == status, (header, status)
        assert wire.crc32(data) == header.crc, "return payload fails its crc"
        return status, header, data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def param_header(op_id: int, op_code: int, payload: bytes) -> bytes:
    return ParamHeader.for_payload(op_id, op_code, payload).pack()


# -- helpers for the peer processes --------------------------------------------------------
def report(**fields: Any) -> None:
    """One JSON line on stdout (atomic: well under PIPE_BUF)."""
    os.write(1, (json.dumps(fields) + "\n").encode())


def die_after(seconds: int) -> None:
    """Safety net for helper processes: SIGALRM (default action: terminate)
    ends a process that a broken test left waiting. Survives execve."""
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(seconds)


def wait_readable(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("rawpeer is a library")
