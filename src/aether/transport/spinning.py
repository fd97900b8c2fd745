"""When a waiter should spin before it sleeps.

A reply that arrives while the waiter spins costs no wake-up, and on this
class of VM a cross-CPU wake-up costs tens of microseconds, more than the
round trip's own work. But a spin that finds nothing burns a CPU the peer
may need: with many clients on few cores (``aether bench load``), spinning
clients take the service's CPU and every reply comes later. So spinning is
adaptive, like glibc's adaptive mutexes: after a few spins in a row that
found nothing, the waiter sleeps at once for a while, then tries again.
"""

from __future__ import annotations

MISSES_BEFORE_PAUSE = 4
PAUSE_WAITS = 256


class AdaptiveSpin:
    """The spin-or-sleep record of one waiter (one thread at a time)."""

    __slots__ = ("_misses", "_pause")

    def __init__(self) -> None:
        self._misses = 0
        self._pause = 0

    def allowed(self) -> bool:
        """Whether this wait may spin first (counts down a pause)."""
        if self._pause > 0:
            self._pause -= 1
            return False
        return True

    def hit(self) -> None:
        """The spin found what it waited for."""
        self._misses = 0

    def miss(self) -> None:
        """The spin ran out: after a few in a row, pause spinning."""
        self._misses += 1
        if self._misses >= MISSES_BEFORE_PAUSE:
            self._misses = 0
            self._pause = PAUSE_WAITS
