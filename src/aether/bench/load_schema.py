"""Operations of the load-test service (``aether bench load``).

Every request names its client and its sequence number and carries a random
payload; every reply repeats all three, so a client can tell its own result
from anyone else's and from a stale one.
"""

from __future__ import annotations

import sys

import msgspec

import aether


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What ``load.echo`` and ``load.work`` return: the request, repeated."""

    client: int
    seq: int
    data: bytes = b""
    steps: int = 0


@aether.operation(code=0x4C01, name="load.echo", result=Reply)
class LoadEcho(aether.Params, frozen=True, kw_only=True):
    """Return the request as it arrived (handled inline on the session thread)."""

    client: int
    seq: int
    data: bytes = b""


@aether.operation(code=0x4C02, name="load.work", result=Reply)
class LoadWork(aether.Params, frozen=True, kw_only=True):
    """Count ``steps`` steps of ``delay`` seconds in a worker thread with
    progress; honours cancel (raises Cancelled, records nothing)."""

    client: int
    seq: int
    steps: int = 5
    delay: float = 0.001


@aether.operation(code=0x4C03, name="load.fail", result=None)
class LoadFail(aether.Params, frozen=True, kw_only=True):
    """Always fails (an error path in the mixed soak traffic)."""

    client: int
    seq: int


class Heap(msgspec.Struct, frozen=True, kw_only=True):
    """The service's Python heap, as opposed to its RSS."""

    blocks: int  # sys.getallocatedblocks(): live pymalloc and object blocks
    threads: int
    # The C allocator's figures (osapi.malloc_stats; 0 where it has none):
    # memory in use there grows with a leak of C allocations, free memory
    # it keeps grows with fragmentation.
    malloc_in_use: int = 0
    malloc_free: int = 0
    malloc_mapped: int = 0


@aether.operation(code=0x4C04, name="load.heap", result=Heap)
class LoadHeap(aether.Params, frozen=True, kw_only=True):
    """The service's Python heap (tells a leak of objects from memory the C
    allocator keeps)."""


schema = sys.modules[__name__]
