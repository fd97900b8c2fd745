"""The mapping transport: one sealed memfd per session holding two rings,
plus two eventfds as doorbells (``docs/protocol.md`` section 10).

The service creates the region after MAP_MODE and hands the three
descriptors over with MAP_READY (``SCM_RIGHTS``); nothing is named in
``/dev/shm`` and no cross-process memory access is needed. The ring logic
(frames, indices, checks) is sans-IO in :mod:`aether.wire.rings`; this module
maps the memory and does the waiting:

* a waiter first spins on the ring's head for a bounded time (``spin``
  seconds), then announces that it sleeps (its word in the control area),
  re-checks the ring, and only then blocks in ``poll`` on its eventfd and
  the other descriptors it watches;
* a producer publishes a frame and then rings the peer's eventfd only if the
  peer announced it sleeps.

"Announce, re-check" and "publish, look" are the two halves of Dekker's
pattern: each side stores one word and loads the other, and x86's store
buffer may let the load pass the store, which would lose a wake-up. Both
sides therefore put a full barrier in between (``rings.fence``: the ring
extension's ``mfence``, or a lock's ``lock cmpxchg`` where it was not built).
A writer whose ``bell_word`` is set does the "publish, look" half itself:
``put`` returns whether the peer must be woken.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aether import osapi
from aether.errors import RemoteProtocolError
from aether.wire import rings


class MappedRegion:
    """A mapped session region: the control words and the two rings' bytes."""

    def __init__(self, fd: int, ring_size: int) -> None:
        self.fd = fd
        self.ring_size = ring_size
        self.size = rings.region_size(ring_size)
        self.view: osapi.SharedView | None = osapi.SharedView.map(fd, self.size)
        whole = memoryview(self.view)
        self.ctl: memoryview = whole[:rings.CONTROL_BYTES].cast("Q")
        start = rings.CONTROL_BYTES
        self.request_bytes: memoryview = whole[start:start + ring_size]
        self.reply_bytes: memoryview = whole[start + ring_size:start + 2 * ring_size]
        whole.release()

    def close(self) -> None:
        """Unmap (once no payload view of the caller's is left) and close the fd."""
        for mv in (self.ctl, self.request_bytes, self.reply_bytes):
            mv.release()
        view, self.view = self.view, None
        if view is not None:
            try:
                view.close()
            except BufferError:
                pass  # a caller still holds a payload view: unmapped when it goes
        osapi.close_fd(self.fd)


def spin_until(ready: Callable[[], bool], spin: float) -> bool:
    """Poll ``ready`` without sleeping for up to ``spin`` seconds."""
    if ready():
        return True
    if spin <= 0.0:
        return False
    clock = time.perf_counter
    end = clock() + spin
    while True:
        for _ in range(32):
            if ready():
                return True
        if clock() >= end:
            return False


class _Endpoint:
    """What both ends share: a region, our doorbell and the peer's."""

    my_word: int
    peer_word: int

    def __init__(self, region: MappedRegion, my_efd: int, peer_efd: int) -> None:
        self.region = region
        self.ctl = region.ctl
        self.my_efd = my_efd
        self.peer_efd = peer_efd
        self.sleeps = 0  # times this end went to sleep (for tests and tuning)
        self._pollers: dict[tuple[int, ...], osapi.Poller] = {}

    def ring_peer(self) -> None:
        """After publishing: wake the peer if it announced it sleeps."""
        rings.fence()
        if self.ctl[self.peer_word]:
            osapi.eventfd_signal(self.peer_efd)

    def sleep(self, pending: Callable[[], bool], watch: tuple[int, ...],
              timeout: float | None, announce: int = rings.SLEEPING) -> list[int]:
        """Announce (``announce`` in our sleeping word), re-check ``pending``,
        then block until our doorbell or one of ``watch`` is readable or
        ``timeout`` passes. Returns the readable descriptors of ``watch`` (an
        empty list: look at the ring again)."""
        ctl = self.ctl
        word = self.my_word
        ctl[word] = announce
        rings.fence()
        try:
            if pending():
                return []
            self.sleeps += 1
            poller = self._pollers.get(watch)
            if poller is None:
                if len(self._pollers) > 8:
                    self._pollers.clear()
                poller = self._pollers[watch] = osapi.Poller((self.my_efd, *watch))
            ready = poller.wait(timeout)
        finally:
            ctl[word] = 0
        if self.my_efd in ready:
            osapi.eventfd_drain(self.my_efd)
        return [fd for fd in ready if fd != self.my_efd]

    def close(self) -> None:
        self.region.close()
        for fd in (self.my_efd, self.peer_efd):
            osapi.close_fd(fd)


class MappingServiceSide(_Endpoint):
    """The service's end: creates the region and owns the reply ring."""

    my_word = rings.W_SERVICE_SLEEPING
    peer_word = rings.W_CLIENT_SLEEPING

    def __init__(self, ring_size: int, *, last_op_id: int = 0) -> None:
        size = rings.region_size(ring_size)
        fd = osapi.memfd_create("aether-session", size, seal_size=True)
        region: MappedRegion | None = None
        efds: list[int] = []
        try:
            osapi.add_seals(fd, osapi.F_SEAL_SEAL)
            region = MappedRegion(fd, ring_size)
            efds = [osapi.eventfd_create(), osapi.eventfd_create()]
        except BaseException:
            if region is not None:
                region.close()
            else:
                osapi.close_fd(fd)
            for e in efds:
                osapi.close_fd(e)
            raise
        rings.init_control(region.ctl, ring_size)
        # efds[0]: the client rings it (requests); efds[1]: we ring it (replies)
        super().__init__(region, efds[0], efds[1])
        self.requests = rings.request_reader(region.ctl, region.request_bytes)
        # A loan's payload summed while the client writes it (rings.LoanSums)
        self.sums = rings.LoanSums(region.ctl, region.request_bytes)
        self.requests.sums = self.sums
        self.replies = rings.reply_writer(region.ctl, region.reply_bytes)
        self.replies.bell_word = self.peer_word
        self.ops = rings.ServiceRingOps(last_op_id)
        self.result_capacity: int = self.replies.capacity  # fixed for this region

    def fds(self) -> list[int]:
        """The descriptors MAP_READY carries: memfd, request doorbell, reply doorbell."""
        return [self.region.fd, self.my_efd, self.peer_efd]


class MappingClientSide(_Endpoint):
    """The client's end: maps what MAP_READY handed over, owns the request ring."""

    my_word = rings.W_CLIENT_SLEEPING
    peer_word = rings.W_SERVICE_SLEEPING

    def __init__(self, fds: list[int], ring_size: int, region_size: int,
                 *, last_op_id: int = 0) -> None:
        try:
            why = self._check(fds, ring_size, region_size)
            if why:
                raise RemoteProtocolError(f"MAP_READY: {why}", event="MapReady")
            region = MappedRegion(fds[0], ring_size)
        except BaseException:
            for fd in fds:
                osapi.close_fd(fd)
            raise
        try:
            why = rings.check_control(region.ctl, ring_size)
        except BaseException:
            why = "unreadable control area"
        if why:
            region.close()
            for fd in fds[1:]:
                osapi.close_fd(fd)
            raise RemoteProtocolError(f"MAP_READY: {why}", event="MapReady")
        super().__init__(region, fds[2], fds[1])
        self.requests = rings.request_writer(region.ctl, region.request_bytes)
        self.requests.bell_word = self.peer_word
        self.replies = rings.reply_reader(region.ctl, region.reply_bytes)
        self.ops = rings.ClientRingOps(last_op_id)

    @staticmethod
    def _check(fds: list[int], ring_size: int, region_size: int) -> str:
        if len(fds) != 3:
            return f"{len(fds)} descriptors, expected 3"
        code, text = rings.check_ring_size(ring_size, max_size=1 << 40)
        if code:
            return text
        if region_size != rings.region_size(ring_size):
            return f"region size {region_size} does not match ring size {ring_size}"
        why = osapi.check_sealed_memfd(fds[0], region_size)
        if why:
            return f"memfd: {why}"
        if not (osapi.is_eventfd(fds[1]) and osapi.is_eventfd(fds[2])):
            return "the doorbells are not eventfds"
        return ""

    @property
    def param_capacity(self) -> int:
        return self.requests.capacity

