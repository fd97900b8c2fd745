"""Test-only service targets of the adversarial suite (run by ServiceProcess
as ``adversarial_targets:tight`` with this directory on PYTHONPATH).

``tight``: the Guard's schema plus two hostile-minded operations, with
limits small enough that a test reaches every one of them in a few
connections: 4 sessions per uid, 8 half-open connections per uid (16 in
all), a 2 s handshake timeout, a 0.5 s send timeout (a client that does
not read is cut off), 2 handler threads per uid.
"""

from __future__ import annotations

import sys
import threading

import aether
import aether_guard.schema
from aether import osapi
from aether.service import OperationContext
from aether_guard.schema import HashTree
from aether_guard.service import hash_tree


@aether.operation(code=0x0E01, name="adv.hang", result=str)
class Hang(aether.Params, frozen=True, kw_only=True):
    """Never returns and ignores CANCEL (a handler stuck in I/O)."""


@aether.operation(code=0x0E02, name="adv.chatty", result=int)
class Chatty(aether.Params, frozen=True, kw_only=True):
    """Reports progress without pause for ``count`` steps."""

    count: int = 1_000_000


schema = sys.modules[__name__]
SCHEMAS = (aether_guard.schema, schema)
LIMITS = aether.Limits(
    max_sessions_per_uid=4, max_half_open=16, max_half_open_per_uid=8,
    handshake_timeout=2.0, send_timeout=0.5, max_workers_per_uid=2,
    progress_interval=0.0, shutdown_grace=0.5,
    # two mapping sessions with the client's default rings (2 x 132 KiB), not three
    max_ring_bytes_per_uid=300_000,
)
tight = aether.Service("adv-tight", schema=SCHEMAS, limits=LIMITS)
tight.handler(HashTree)(hash_tree)
_NEVER = threading.Event()


@tight.handler(Hang)
def hang(params: Hang, ctx: OperationContext) -> str:
    _NEVER.wait()
    return "unreachable"


@tight.handler(Chatty)
def chatty(params: Chatty, ctx: OperationContext) -> int:
    for i in range(params.count):
        if ctx.cancelled:
            raise aether.Cancelled("cancelled")
        ctx.progress(i + 1, params.count, "")
    return params.count


# ``nopidfd``: the service as it runs on a kernel without SO_PEERPIDFD
# (Linux < 6.5, e.g. Debian 12's 6.1). The kernel here has it, so its probe
# is answered "no" while this one service is built; everything else is real.
def _no_peer_pidfd() -> bool:
    return False


_probe = osapi.peer_pidfd_supported
osapi.peer_pidfd_supported = _no_peer_pidfd
try:
    nopidfd = aether.Service("adv-nopidfd", schema=SCHEMAS, limits=LIMITS)
finally:
    osapi.peer_pidfd_supported = _probe
