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

from ._libc import libc

M_MMAP_THRESHOLD = -3  # <malloc.h>
DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def pin_mmap_threshold(size: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix the C allocator's mmap threshold at ``size`` bytes.

    Returns False, changing nothing, where the C library has no ``mallopt``
    (not glibc) or where the environment already sets the threshold
    (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``): an operator's choice wins.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or \
            "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = libc.mallopt
    except AttributeError:
        return False
    mallopt.restype = ctypes.c_int
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, size))
