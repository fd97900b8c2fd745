"""When a waiter should spin before it sleeps.

A reply that arrives while the waiter spins costs no wake-up, and on this
class of VM a cross-CPU wake-up costs tens of microseconds, more than the
round trip's own work. But a spin that finds nothing burns a CPU the peer
may need: with more clients than cores (``aether bench``'s 16 clients,
``aether bench load``'s 64), spinning clients take the service's CPU, every
reply comes later, and the service's throughput collapses (measured: 3,960
calls/s with one client, 2,462 with sixteen, on the memory transport).

So a waiter spins only while the replies it has seen lately came within
its spin time: it keeps a moving average of how long it waited (spinning
or sleeping, from its send to the reply) and spins when that average fits
well within the spin (``SPIN_IF_WITHIN``). Waits are measured whether or
not it spun, so a waiter that stopped spinning starts again once replies
are quick again.
"""

from __future__ import annotations

# Weight of the newest wait in the moving average (1/8, as TCP's srtt).
NEWEST_WEIGHT = 0.125
# One very long wait (a slow operation) counts as at most this many spins,
# so a handful of quick replies brings spinning back.
CAP_IN_SPINS = 4.0
# Spin only while the expected wait is within this share of the spin time.
# At 1 (spin whenever the reply is expected within the spin) four clients of
# one service on two cores kept spinning through waits of 100-300 µs and took
# the service's CPU: `aether bench run`'s 4-client rows fell below one
# client's (memory 3,373 vs 5,303 calls/s). At 1/4 they sleep instead and
# reach 5,483 (memory) and 12,343 (mapping, from 8,864); a lone client's
# waits (15-200 µs on a 300 µs spin) still spin.
SPIN_IF_WITHIN = 0.25


class AdaptiveSpin:
    """The recent waits of one waiter (used by one thread at a time)."""

    __slots__ = ("expected",)

    def __init__(self) -> None:
        self.expected = 0.0  # seconds: the moving average of recent waits

    def worth(self, spin: float) -> bool:
        """Whether spinning up to ``spin`` seconds is likely to find the reply."""
        return self.expected <= spin * SPIN_IF_WITHIN

    def waited(self, seconds: float, spin: float) -> None:
        """Record one wait, from the request sent to the reply received."""
        sample = min(seconds, CAP_IN_SPINS * spin)
        self.expected += (sample - self.expected) * NEWEST_WEIGHT
