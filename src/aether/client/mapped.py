"""The client's side of the mapping transport's operations: frames into the
request ring, replies out of the reply ring (``docs/protocol.md`` §10).

Kept apart from :mod:`aether.client.client` so that the per-call path stays
short: one encode, one copy into the ring, one doorbell check, a bounded
spin on the reply ring's head, and a sleep on the eventfd only after that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from aether import osapi
from aether.errors import AetherTimeoutError, PeerGoneError, RemoteProtocolError
from aether.transport.channel import Channel
from aether.transport.mapping import MappingClientSide, spin_until
from aether.transport.spinning import SPIN_IF_WITHIN, AdaptiveSpin, cpu_to_spare
from aether.wire import FrameKind, rings

_EXECUTE = int(FrameKind.EXECUTE)
_CANCEL = int(FrameKind.CANCEL)
Frame = tuple[int, int, int, memoryview]
T = TypeVar("T")
# Seconds to spin for the service to drain the ring before sleeping between
# retries: it is usually about to (it was just woken).
CATCH_UP_SPIN = 0.0005
# A loan at least this large says how far Loan.write has filled it
# (rings.FillNotice), so that the service sums it for the crc meanwhile
# instead of after. Below it the service's pass (33 µs at 1 MiB) is not
# worth waking the service for.
ANNOUNCE_FROM = 1 << 20
assert ANNOUNCE_FROM >= rings.PRESUM_MIN
_clock = time.perf_counter


class ControlMessage(Exception):
    """A datagram arrived on the control socket while waiting for a reply
    (GOODBYE, ERROR or a hang-up): the caller decodes it."""

    def __init__(self, data: bytes) -> None:
        super().__init__("control message")
        self.data = data


class MappedCalls:
    """The rings of one session, as the client uses them."""

    def __init__(self, side: MappingClientSide, channel: Channel) -> None:
        self.side = side
        self.channel = channel
        self.writer = side.requests
        self.reader = side.replies
        self.ops = side.ops
        self._sock_fd = channel.fileno()
        self._peer_efd = side.peer_efd
        # The request ring has one producer: EXECUTE comes from the caller's
        # thread, CANCEL from any thread.
        self._wlock = threading.Lock()
        self.fill = rings.FillNotice(side.ctl)
        self._announce = False  # the loan held may still be announced
        self._loan_at = 0
        self.spinning = AdaptiveSpin()
        self._sent_at = 0.0  # perf_counter() of the last request
        # Fixed for this region (growing the rings makes a new MappedCalls).
        self.param_capacity: int = self.writer.capacity

    @property
    def result_capacity(self) -> int:
        return self.side.region.ring_size - rings.FRAME_SIZE

    def send(self, kind: int, op_id: int, arg: int, payload: bytes | memoryview,
             timeout: float) -> None:
        """Put one request frame (waiting up to ``timeout`` for room), then ring."""
        writer = self.writer
        with self._wlock:
            try:
                wake = writer.put(kind, op_id, arg, payload)
            except rings.RingFull:
                wake = self._put_slowly(kind, op_id, arg, payload, timeout)
        if wake:  # the service announced it sleeps (the ring's bell word)
            osapi.eventfd_signal(self._peer_efd)
        self._sent_at = time.perf_counter()

    def try_send(self, kind: int, op_id: int, arg: int, payload: bytes | bytearray | memoryview
                 ) -> bool:
        """:meth:`send` if the frame fits now; False (nothing published) if not."""
        # acquire/release rather than ``with``: 60 against 110 ns here, on
        # every call's critical path
        lock = self._wlock
        lock.acquire()
        try:
            wake = self.writer.put(kind, op_id, arg, payload)
        except rings.RingFull:
            return False
        finally:
            lock.release()
        if wake:
            osapi.eventfd_signal(self._peer_efd)
        self._sent_at = time.perf_counter()
        return True

    def _put_slowly(self, kind: int, op_id: int, arg: int, payload: bytes | memoryview,
                    timeout: float) -> bool:
        return self._retry(lambda: self.writer.put(kind, op_id, arg, payload), timeout)

    def _retry(self, attempt: Callable[[], T], timeout: float) -> T:
        """Retry ``attempt`` while the ring is full: wake the service, give it
        a moment to catch up (or to pass a WRAP), then wait in short polls."""
        deadline = time.monotonic() + timeout
        writer = self.writer
        while True:
            self.side.ring_peer()
            spin_until(lambda: writer.peer_tail() == writer.head, CATCH_UP_SPIN)
            try:
                return attempt()
            except rings.RingFull:
                pass
            if osapi.wait_readable((self._sock_fd,), 0.001):
                raise PeerGoneError("the service closed the connection")
            if time.monotonic() >= deadline:
                raise AetherTimeoutError(
                    f"the service has not read its requests for {timeout:.1f} s")

    def loan(self, size: int, timeout: float) -> memoryview:
        """Reserve a request frame of ``size`` payload bytes (held under the
        producer lock until :meth:`commit_loan` or :meth:`abandon_loan`)."""
        self._wlock.acquire()
        try:
            try:
                view = self.writer.reserve(size)
            except rings.RingFull:
                view = self._retry(lambda: self.writer.reserve(size), timeout)
        except BaseException:
            self._wlock.release()
            raise
        self._loan_at = self.writer.loan_offset
        self._announce = size >= ANNOUNCE_FROM
        return view

    def loan_filled(self, n: int) -> None:
        """``Loan.write``: the loan's first ``n`` payload bytes are final.
        A service that sleeps asking to be woken for this (its word says
        SLEEPING_SUMS_LOANS) is woken, to sum them while the rest is written."""
        fill = self.fill
        if not fill.live:
            if not self._announce:
                return
            self._announce = False  # once per loan: a retracted one stays quiet
            fill.begin(self._loan_at)
        fill.filled(n)
        rings.fence()  # the "publish, look" half of the doorbell (mapping.py)
        if self.side.ctl[rings.W_SERVICE_SLEEPING] == rings.SLEEPING_SUMS_LOANS:
            osapi.eventfd_signal(self._peer_efd)

    def loan_exposed(self) -> None:
        """``Loan.buffer`` was handed out: what loan_filled said may change."""
        self._announce = False
        self.fill.retract()

    def commit_loan(self, op_id: int, code: int, size: int, flags: int = 0,
                    tail_crc: tuple[int, int] | None = None) -> None:
        self._announce = False
        self.fill.end()
        try:
            self.writer.commit(_EXECUTE, op_id, code, size, flags, tail_crc)
        finally:
            self._wlock.release()
        self.side.ring_peer()
        self._sent_at = time.perf_counter()

    def abandon_loan(self) -> None:
        self.loan_exposed()  # the next frame may land where this loan was
        self._wlock.release()

    def cancel(self, op_id: int, timeout: float) -> None:
        self.send(_CANCEL, op_id, 0, b"", timeout)

    def next_reply(self, deadline: float | None, spin: float) -> Frame:
        """The next reply frame (release it with ``reader.release()``).

        Raises AetherTimeoutError when ``deadline`` passes, ControlMessage
        when the control socket has something to say first, and
        RemoteProtocolError for a ring the service could not have written.
        """
        reader = self.reader
        if self.spinning.unaveraged is not None:
            self.spinning.catch_up(spin)
        frame = reader.poll()
        if frame is None:
            frame = self._wait_reply(deadline, spin)
        if spin:
            self.spinning.waited(time.perf_counter() - self._sent_at, spin)
        return frame

    def reply_soon(self, spin: float) -> Frame | None:
        """The next reply frame if it is there or comes within the spin (the
        same bounded, adaptive spin as :meth:`next_reply`), else None; never
        sleeps and never raises for the ring (None: :meth:`next_reply` will)."""
        reader = self.reader
        spinning = self.spinning
        if spinning.unaveraged is not None:  # the last call's wait: nothing waits on us now
            spinning.catch_up(spin)
        try:
            # spinning.should_spin(spin), inline: this is every call's path
            if spin and spinning.expected <= spin * SPIN_IF_WITHIN and cpu_to_spare():
                frame = reader.take(spin)
            else:
                frame = reader.poll()
        except (RemoteProtocolError, ValueError):  # ValueError: closed meanwhile
            return None
        if frame is not None and spin:
            # From here to the caller's return is the round trip's critical
            # path: store the wait and average it in at the next call.
            spinning.unaveraged = _clock() - self._sent_at
        return frame

    def sleep_for_reply(self, spin: float, deadline: float | None) -> Frame | None:
        """After :meth:`reply_soon` found nothing: the next reply frame, waited
        for on the doorbell as :meth:`next_reply` does, or None where
        next_reply would raise or return something else: a datagram on the
        control socket, the deadline, a bad ring, a closed region. None
        consumes nothing, so the caller's general path finds the same and
        reports it.

        Kept apart from next_reply for the short call path: after a sleep the
        interpreter runs cold, and every layer skipped then counts double.
        """
        reader = self.reader
        watch = (self._sock_fd,)
        try:
            while True:
                remaining = None
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                ready = self.side.sleep(reader.pending, watch, remaining)
                frame = reader.poll()
                if frame is not None:
                    if spin:
                        self.spinning.waited(time.perf_counter() - self._sent_at, spin)
                    return frame
                if ready:
                    return None
        except (RemoteProtocolError, ValueError):
            return None

    def _wait_reply(self, deadline: float | None, spin: float) -> Frame:
        reader = self.reader
        if spin and self.spinning.should_spin(spin):
            frame = reader.take(spin)
            if frame is not None:
                return frame
        watch = (self._sock_fd,)
        while True:
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AetherTimeoutError("no reply in time")
            ready = self.side.sleep(reader.pending, watch, remaining)
            frame = reader.poll()
            if frame is not None:
                return frame
            if ready:
                data = self.channel.recv(0.0)
                assert data is not None
                raise ControlMessage(data)

    def close(self) -> None:
        self.side.close()
