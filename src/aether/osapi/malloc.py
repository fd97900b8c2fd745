"""The C allocator's settings for a long-running service.

glibc raises its mmap threshold each time a large mapped block is freed (up
to 32 MiB), and its trim threshold with it. After that, large temporary
buffers (received payloads, results) are carved from the per-thread arenas
instead of being mapped and unmapped, and an arena gives freed pages back to
the kernel only when they sit at its top: a service whose sessions and
workers are threads that come and go then keeps growing for a long time
(measured with ``aether bench load --soak``: tens of MiB in minutes while
the Python heap stayed flat). Fixing the threshold with ``mallopt`` turns
that adjustment off: large buffers are unmapped when freed and arena tops
are trimmed, so the RSS follows what is in use.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from ._libc import libc

M_MMAP_THRESHOLD = -3  # <malloc.h>
# Below glibc's own starting value (128 KiB): payloads, decoded copies and
# results of 32-128 KiB are transient, and carved from the heap between
# long-lived small objects they leave holes a trim cannot give back (the
# soak's free memory grew ~9 MiB/h at 128 KiB, stayed flat at 32 KiB). Each
# such buffer costs an mmap and a munmap instead.
DEFAULT_MMAP_THRESHOLD = 32 * 1024


def pin_mmap_threshold(size: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix the C allocator's mmap threshold at ``size`` bytes.

    Returns False, changing nothing, where the C library has no ``mallopt``
    (not glibc) or where the environment already sets the threshold
    (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``): an operator's choice wins.
    """
    return _mallopt_unless_set(M_MMAP_THRESHOLD, size, "MALLOC_MMAP_THRESHOLD_",
                               "mmap_threshold")


def _mallopt_unless_set(option: int, value: int, variable: str, tunable: str) -> bool:
    """``mallopt(option, value)``, unless the operator set it in the
    environment (``variable``, or ``tunable`` in ``GLIBC_TUNABLES``): False
    then, or where the C library has no ``mallopt``."""
    if variable in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = libc.mallopt
    except AttributeError:
        return False
    mallopt.restype = ctypes.c_int
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(option, value))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


@dataclass(frozen=True)
class MallocStats:
    """The C allocator's own account of its memory, summed over its arenas
    (``mallinfo2``): what is handed out, what it holds free, what is mapped."""

    arena_bytes: int  # taken from the kernel for the arenas (brk heap and thread arenas)
    in_use_bytes: int  # of which handed out and not freed
    free_bytes: int  # of which free but kept (fragments, or a top not yet trimmed)
    mapped_bytes: int  # large blocks in their own mappings
    mapped_blocks: int


def malloc_stats() -> MallocStats | None:
    """The allocator's figures, or None where the C library has no
    ``mallinfo2`` (not glibc, or glibc before 2.33)."""
    try:
        mallinfo2 = libc.mallinfo2
    except AttributeError:
        return None
    mallinfo2.restype = _Mallinfo2
    mallinfo2.argtypes = []
    info = mallinfo2()
    return MallocStats(arena_bytes=info.arena, in_use_bytes=info.uordblks,
                       free_bytes=info.fordblks, mapped_bytes=info.hblkhd,
                       mapped_blocks=info.hblks)


def trim_heap() -> bool:
    """Give the kernel back the free pages the C allocator holds, in every
    arena and not only at their tops (``malloc_trim(0)``, glibc >= 2.8).

    Freed memory in the middle of an arena stays resident otherwise: a
    service whose threads come and go spreads its allocations over up to 8
    arenas per core, and the free holes between live blocks add up (the
    soak measured it; see docs/reliability.md). Returns True if memory was
    released; False where there was none to release or no ``malloc_trim``.
    """
    try:
        malloc_trim = libc.malloc_trim
    except AttributeError:
        return False
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]
    return bool(malloc_trim(0))


M_ARENA_MAX = -8  # <malloc.h>


def limit_arenas(count: int = 1) -> bool:
    """Let the C allocator keep at most ``count`` arenas (``M_ARENA_MAX``).

    glibc gives threads their own arenas, up to 8 per core, so that threads
    need not wait for each other's malloc; each arena then keeps its own
    free memory, which the threads of the other arenas cannot reuse. In a
    Python service the interpreter lock already serialises nearly every
    allocation, so the extra arenas buy little, while their free memory adds
    up as session and worker threads come and go (measured with ``aether
    bench load --soak``). Returns False, changing nothing, where there is no
    ``mallopt`` or the environment sets the limit (``MALLOC_ARENA_MAX``,
    ``GLIBC_TUNABLES``).
    """
    return _mallopt_unless_set(M_ARENA_MAX, count, "MALLOC_ARENA_MAX", "arena_max")
