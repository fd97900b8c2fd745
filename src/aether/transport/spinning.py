"""When a waiter should spin before it sleeps.

A reply that arrives while the waiter spins costs no wake-up, and on this
class of VM a cross-CPU wake-up costs tens of microseconds, more than the
round trip's own work. But a spin that finds nothing burns a CPU the peer
may need: with more clients than cores (``aether bench``'s 16 clients,
``aether bench load``'s 64), spinning clients take the service's CPU, every
reply comes later, and the service's throughput collapses (measured: 3,960
calls/s with one client, 2,462 with sixteen, on the memory transport).

So a waiter spins only when both hold:

- the replies it has seen lately came within its spin time: it keeps a
  moving average of how long it waited (spinning or sleeping, from its send
  to the reply). Waits are measured whether or not it spun, so a waiter
  that stopped spinning starts again once replies are quick again;
- a CPU is there to spare: the machine's runnable tasks, the waiter
  included, do not outnumber its CPUs (``/proc/loadavg``, read at most every
  ``CPU_CHECK_EVERY``). A lone client and its service are two tasks on two
  CPUs and spin; four clients of one service on two CPUs sleep and leave
  the CPU to the service.

The history alone could not tell these apart: a lone memory-transport
client waits 150-250 µs and gains from spinning through it (sleeping cost
it 147 -> 354 µs p50), while four clients wait as long and lose by it.
"""

from __future__ import annotations

import time

from aether import osapi

# Weight of the newest wait in the moving average (1/8, as TCP's srtt).
NEWEST_WEIGHT = 0.125
# One very long wait (a slow operation) counts as at most this many spins,
# so a handful of quick replies brings spinning back.
CAP_IN_SPINS = 4.0
# Spin only while the expected wait is within this share of the spin time.
SPIN_IF_WITHIN = 1.0
# How long one reading of the machine's runnable tasks is trusted (seconds):
# a read costs ~2 µs, a spinning round trip ~20.
CPU_CHECK_EVERY = 0.005

_cpu_checked_at = float("-inf")
_cpu_spare = True


def cpu_to_spare() -> bool:
    """Whether the machine has a CPU for a spinner: its runnable tasks (the
    caller among them) are no more than its CPUs. True when unreadable."""
    global _cpu_checked_at, _cpu_spare
    now = time.monotonic()
    if now - _cpu_checked_at >= CPU_CHECK_EVERY:
        runnable = osapi.runnable_tasks()
        _cpu_spare = runnable is None or runnable <= osapi.online_cpus()
        _cpu_checked_at = now
    return _cpu_spare


class AdaptiveSpin:
    """The recent waits of one waiter (used by one thread at a time)."""

    __slots__ = ("expected", "unaveraged")

    def __init__(self) -> None:
        self.expected = 0.0  # seconds: the moving average of recent waits
        # A wait a caller stored here instead of calling waited(): averaged
        # in by catch_up() before the next decision. A spinning caller
        # stores it the moment the reply lands, when every call it makes
        # delays its own return, and has it averaged in while the next
        # request is out, when nothing waits on the caller.
        self.unaveraged: float | None = None

    def worth(self, spin: float) -> bool:
        """Whether spinning up to ``spin`` seconds is likely to find the reply."""
        return self.expected <= spin * SPIN_IF_WITHIN

    def should_spin(self, spin: float) -> bool:
        """Whether to spin now: the reply is likely within ``spin`` and a
        CPU is free to spin on."""
        return self.expected <= spin * SPIN_IF_WITHIN and cpu_to_spare()

    def waited(self, seconds: float, spin: float) -> None:
        """Record one wait, from the request sent to the reply received."""
        sample = min(seconds, CAP_IN_SPINS * spin)
        self.expected += (sample - self.expected) * NEWEST_WEIGHT

    def catch_up(self, spin: float) -> None:
        """Average in the wait stored in ``unaveraged``, if any."""
        seconds = self.unaveraged
        if seconds is not None:
            self.unaveraged = None
            self.waited(seconds, spin)
