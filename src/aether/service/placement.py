"""Keeping the service's threads on one CPU.

The GIL lets one thread at a time run Python, so the service's threads
(one per session, and the listener) gain nothing from a second CPU for
their Python work, and lose by it. Spread over two CPUs, each hand-off of
the GIL wakes a thread on the other CPU, which finds the GIL taken and
sleeps again; with many sessions busy the threads queue for it. On this
project's 2-vCPU machine, 16 client processes calling 64-byte echoes
(``python scripts/concurrency_cpu.py 16 TRANSPORT``, 2026-11-22) made, with
the kernel spreading the service's threads and with them kept on one CPU:

- socket: 4,017-6,058 against 10,609-12,022 calls/s (the service's
  voluntary context switches per call: 4.2-8.9 against 1.0-1.1);
- memory: 2,670-4,898 against 7,168-7,498 calls/s;
- mapping: 6,952-9,892 against 18,613-24,015 calls/s.

So while it serves two sessions or more, the service keeps its threads on
one CPU, among those it may use, starting with the one it ran on. A lone
session's thread has no other to queue with, and it spins for its client's
next call (``Limits.spin``): kept on one CPU it would spin there while the
kernel put the client on that CPU too (``aether bench``'s unpinned
mapping spin went from 6.9-11.0 to 13.6 µs p50 and from 54-69 to 752 µs
p99), so with one session the kernel places the threads. Two more things
keep the one CPU from costing what pinning usually costs:

- handler threads of operations that do not complete inline (hashing a
  tree, compressing: work that releases the GIL in C) may use every CPU the
  service may use (:meth:`CpuPlacement.free_this_thread`);
- the CPU is not fixed. Every ``interval`` seconds the service compares how
  busy each of its CPUs was, less its own use: when other tasks took more
  than half of its CPU and another was idler by a clear margin, it moves
  its threads there (:func:`choose_cpu`).

Placement stays within the CPUs the service was started with (``taskset``,
a unit's ``CPUAffinity=``); when something changes the affinity while it
runs (``taskset -p``, ``aether bench``'s pinned rows), placement is left to
that for as long as it lasts. ``Limits.one_cpu = False`` (``aether service run
--all-cpus``) leaves placement to the kernel from the start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from aether import osapi
from aether.errors import OSAPIError

log = logging.getLogger("aether.service")

# Move only when other tasks took more than this share of our CPU...
CROWDED = 0.5
# ...and another CPU was busy by at least this much less than they were.
MARGIN = 0.25


def choose_cpu(cpu: int, busy: Mapping[int, float], own: float) -> int | None:
    """The CPU to move the service's threads to, or None to stay.

    ``busy``: per CPU the service may use, the share of the last interval it
    was busy (0 to 1, every task's work); ``own``: the share of one CPU the
    service itself used then, all of it on ``cpu``.
    """
    others_here = busy.get(cpu, 0.0) - own
    if others_here <= CROWDED:
        return None
    idlest = min((c for c in busy if c != cpu), key=lambda c: (busy[c], c), default=None)
    if idlest is None or busy[idlest] > others_here - MARGIN:
        return None
    return idlest


class CpuPlacement:
    """The service's CPU (inactive until :meth:`start`)."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.allowed: frozenset[int] = frozenset()
        self.cpu: int | None = None
        self.together = False  # the threads are on self.cpu (two sessions or more)
        self.moves = 0
        self._free: set[int] = set()  # native ids of threads that may use every CPU
        self._lock = threading.Lock()
        self._due = 0.0
        self._busy: dict[int, int] | None = None
        self._own = 0.0

    @property
    def active(self) -> bool:
        return self.cpu is not None

    def start(self, now: float) -> None:
        """Choose the CPU (none when the process may use only one): the
        threads go there once :meth:`sessions_changed` sees two sessions."""
        allowed = osapi.allowed_cpus()
        if len(allowed) < 2:
            return
        cpu = osapi.current_cpu()
        self.allowed = allowed
        self.cpu = cpu if cpu in allowed else min(allowed)
        self._sample(now)

    def stop(self) -> None:
        """Give every thread back the CPUs it had before :meth:`start`."""
        with self._lock:
            if self.cpu is not None and self.together and self._ours():
                self._place(self.allowed)
            self.cpu = None
            self.together = False

    def sessions_changed(self, count: Callable[[], int]) -> None:
        """Called when a session begins or ends; ``count`` reads how many
        there are (under this object's lock, so that two changes at once
        leave the placement of the later one)."""
        with self._lock:
            if self.cpu is None or (count() >= 2) == self.together or not self._ours():
                return
            if self.together:
                if self._place(self.allowed):
                    self.together = False
            elif self._place(frozenset({self.cpu}), keep=frozenset(self._free)):
                self.together = True
                log.info("service threads on CPU %d (of %s)", self.cpu, sorted(self.allowed))

    def free_this_thread(self) -> None:
        """Let the calling thread (a long operation's handler) use every CPU
        the service may use; call :meth:`thread_done` before it ends."""
        if self.cpu is None:
            return
        with self._lock:
            self._free.add(threading.get_native_id())
        try:
            osapi.set_thread_cpus(self.allowed)
        except OSAPIError:
            pass  # it stays with the others: slower for this handler, never wrong

    def thread_done(self) -> None:
        with self._lock:
            self._free.discard(threading.get_native_id())

    def tick(self, now: float) -> None:
        """Called often by the listener; looks every ``interval`` seconds."""
        if self.cpu is None or now < self._due:
            return
        before_busy, before_own = self._busy, self._own
        elapsed = now - (self._due - self.interval)
        self._sample(now)
        if before_busy is None or self._busy is None or elapsed <= 0:
            return
        hz = osapi.clock_ticks_per_second()
        busy = {c: (self._busy.get(c, 0) - before_busy.get(c, 0)) / (hz * elapsed)
                for c in self.allowed if c in self._busy}
        own = (self._own - before_own) / elapsed
        with self._lock:
            if self.cpu is None or not self.together or not self._ours():
                return
            target = choose_cpu(self.cpu, busy, own)
            if target is None or not self._place(frozenset({target}),
                                                 keep=frozenset(self._free)):
                return
            log.info("service threads moved from CPU %d to CPU %d (others took %.0f%% of it)",
                     self.cpu, target, 100 * (busy.get(self.cpu, 0.0) - own))
            self.cpu = target
            self.moves += 1

    def _ours(self) -> bool:
        """Whether the main thread (the one that starts sessions' threads) is
        where this object put it: if not, someone else placed the service
        (taskset, ``aether bench``'s pinned rows), theirs while it lasts."""
        assert self.cpu is not None
        expected = {self.cpu} if self.together else self.allowed
        return osapi.main_thread_cpus() == expected

    def _place(self, cpus: frozenset[int], keep: frozenset[int] = frozenset()) -> bool:
        try:
            osapi.set_process_cpus(cpus, keep=keep)
        except OSAPIError as exc:
            log.warning("cannot place the service's threads on CPUs %s: %s", sorted(cpus), exc)
            return False
        return True

    def _sample(self, now: float) -> None:
        self._busy = osapi.cpu_busy_ticks()
        self._own = osapi.process_cpu_seconds()
        self._due = now + self.interval
