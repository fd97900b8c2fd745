"""The floors: two Python processes ping-ponging on shared memory.

``floor.spin`` busy-spins on a 64-bit sequence word (no syscalls at all);
``floor.eventfd`` is the same exchange with an eventfd wake-up in each
direction. Together they bound what any Python IPC can reach on this
machine: a transport cannot beat the spin floor, and a blocking one cannot
beat the eventfd floor. The memory is an anonymous memfd handed to the
server process by descriptor (nothing named). The payload is really copied
in and out, so the floor at 64 KiB includes the copies any echo must make.

Layout: page 0 holds the words ``req_seq, resp_seq, length``; the request
area starts at 4096, the reply area ``capacity`` bytes later.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

HEADER = 4096
_REQ, _RESP, _LEN = 0, 1, 2
# Spin iterations between checks that the peer is still alive.
_CHECK_EVERY = 1 << 22


class PeerGone(RuntimeError):
    """The other process stopped answering (it exited or was killed)."""


class ShmPair:
    """One side of a floor exchange over a shared memfd (and two eventfds)."""

    def __init__(self, fd: int, capacity: int, req_efd: int, resp_efd: int) -> None:
        self.fd = fd
        self.capacity = capacity
        self.req_efd = req_efd
        self.resp_efd = resp_efd
        self.mm = mmap.mmap(fd, HEADER + 2 * capacity)
        self.view = memoryview(self.mm)
        self.words = self.view[:HEADER].cast("Q")
        self.req = self.view[HEADER:HEADER + capacity]
        self.resp = self.view[HEADER + capacity:HEADER + 2 * capacity]
        self.seq = 0
        # what the server has answered last: read before it says READY, so a
        # request written right after READY is never mistaken for an old one
        self.last_seen = self.words[_REQ]

    @classmethod
    def create(cls, capacity: int, eventfd: bool) -> ShmPair:
        fd = os.memfd_create("aether-bench-floor", os.MFD_CLOEXEC)
        os.ftruncate(fd, HEADER + 2 * capacity)
        req = os.eventfd(0) if eventfd else -1
        resp = os.eventfd(0) if eventfd else -1
        return cls(fd, capacity, req, resp)

    @classmethod
    def attach(cls, fd: int, capacity: int, req_efd: int, resp_efd: int) -> ShmPair:
        return cls(fd, capacity, req_efd, resp_efd)

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(f for f in (self.fd, self.req_efd, self.resp_efd) if f >= 0)

    def server_args(self) -> list[str]:
        return ["--shm-fd", str(self.fd), "--req-efd", str(self.req_efd),
                "--resp-efd", str(self.resp_efd), "--capacity", str(self.capacity)]

    # -- client side -------------------------------------------------------------
    def caller(self, payload: bytes, alive: Callable[[], bool]) -> Callable[[], bytes]:
        """One round trip: copy the request in, signal, wait, copy the reply out."""
        n = len(payload)
        if n > self.capacity:
            raise ValueError(f"payload {n} exceeds capacity {self.capacity}")
        words, req, resp = self.words, self.req, self.resp
        efd_req, efd_resp = self.req_efd, self.resp_efd
        read, write = os.eventfd_read, os.eventfd_write
        pair = self

        if efd_req < 0:
            def spin_once() -> bytes:
                req[:n] = payload
                words[_LEN] = n
                seq = pair.seq = pair.seq + 1
                words[_REQ] = seq
                budget = _CHECK_EVERY
                while words[_RESP] != seq:
                    budget -= 1
                    if not budget:
                        if not alive():
                            raise PeerGone("floor server exited")
                        budget = _CHECK_EVERY
                return bytes(resp[:words[_LEN]])
            return spin_once

        def eventfd_once() -> bytes:
            req[:n] = payload
            words[_LEN] = n
            seq = pair.seq = pair.seq + 1
            words[_REQ] = seq
            write(efd_req, 1)
            read(efd_resp)
            if words[_RESP] != seq:
                raise PeerGone("floor server answered out of turn")
            return bytes(resp[:words[_LEN]])
        return eventfd_once

    # -- server side -------------------------------------------------------------
    def serve(self, sink: bool) -> None:
        words, req, resp = self.words, self.req, self.resp
        efd_req, efd_resp = self.req_efd, self.resp_efd
        blocking = efd_req >= 0
        last = self.last_seen
        while True:
            if blocking:
                os.eventfd_read(efd_req)
            else:
                while words[_REQ] == last:
                    pass
            last = words[_REQ]
            n = words[_LEN]
            if sink:
                # read in place (a zero-copy consumer): touch both ends, ack one byte
                if n:
                    _ = req[0], req[n - 1]
                resp[0] = 0x6B  # b"k"
                words[_LEN] = 1
            else:
                resp[:n] = req[:n]
            words[_RESP] = last
            if blocking:
                os.eventfd_write(efd_resp, 1)

    def close(self) -> None:
        self.words.release()
        self.req.release()
        self.resp.release()
        self.view.release()
        self.mm.close()
        for fd in self.fds:
            os.close(fd)


def memcpy_caller(size: int) -> Callable[[], None]:
    """Single-process copy of ``size`` bytes into a preallocated buffer."""
    src = memoryview(os.urandom(size))
    dst = memoryview(bytearray(size))

    def once() -> None:
        dst[:] = src
    return once
