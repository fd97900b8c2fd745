"""A service whose one operation leaves ~24 MiB of free holes in its
C-allocator arena (tests/service/test_allocator.py)."""

from __future__ import annotations

import ctypes
import sys

import aether
from aether.service import Limits, OperationContext

BLOCK = 16 * 1024  # below the mmap threshold (32 KiB): carved from the heap
BLOCKS = 1600
KEEP_EVERY = 50  # the kept blocks pin the holes between them; the last is kept

_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_kept: list[int] = []


@aether.operation(code=0x0E01, name="trimtest.fragment", result=int)
class Fragment(aether.Params, frozen=True, kw_only=True):
    """Allocate and touch BLOCKS blocks, free all but every KEEP_EVERY-th;
    returns the bytes freed."""


schema = sys.modules[__name__]
service = aether.Service("trimtest", schema=schema, limits=Limits(heap_trim_interval=0.2))
untrimmed = aether.Service("trimtest", schema=schema, limits=Limits(heap_trim_interval=0))


def fragment(params: Fragment, ctx: OperationContext) -> int:
    blocks = [_libc.malloc(BLOCK) for _ in range(BLOCKS)]
    for p in blocks:
        ctypes.memset(p, 1, BLOCK)
    freed = 0
    for i, p in enumerate(blocks):
        if i % KEEP_EVERY == KEEP_EVERY - 1:
            _kept.append(p)
        else:
            _libc.free(p)
            freed += BLOCK
    return freed


for _svc in (service, untrimmed):
    _svc.handler(Fragment)(fragment)
