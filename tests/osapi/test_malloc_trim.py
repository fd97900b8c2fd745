"""osapi.trim_heap: free pages between live blocks of a thread's arena go back
to the kernel (they stay resident otherwise: only an arena's top is trimmed
by free)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aether import osapi
from aether.testing import python_env

# A thread allocates 400 blocks of 64 KiB (below the mmap threshold: they come
# from its arena) and frees all but every 50th: ~24 MiB of holes between
# live blocks, the last block live so the arena's top cannot be trimmed.
SCRIPT = r"""
import ctypes, threading
from aether import osapi
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 * 1024
kept = []

def anon_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:"))

def fragment():
    blocks = [libc.malloc(SIZE) for _ in range(400)]
    for p in blocks:
        ctypes.memset(p, 1, SIZE)
    for i, p in enumerate(blocks):
        if i % 50 == 49:
            kept.append(p)
        else:
            libc.free(p)

t = threading.Thread(target=fragment)
t.start()
t.join()
before = anon_kib()
released = osapi.trim_heap()
print(before, anon_kib(), int(released))
"""


def test_trim_heap_gives_back_the_holes_of_a_thread_arena():
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=python_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, after, released = (int(x) for x in out.stdout.split())
    assert released == 1
    assert before - after > 16 * 1024, (before, after)  # of the ~24 MiB of holes


def test_malloc_stats_count_a_block_in_use_and_a_mapped_one():
    import ctypes

    if osapi.malloc_stats() is None:
        pytest.skip("no mallinfo2 in this C library (glibc >= 2.33)")
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = osapi.malloc_stats()
    small, large = libc.malloc(64 * 1024), libc.malloc(64 * 1024 * 1024)
    try:
        during = osapi.malloc_stats()
    finally:
        libc.free(small)
        libc.free(large)
    assert before is not None and during is not None
    assert during.in_use_bytes - before.in_use_bytes >= 64 * 1024
    assert during.mapped_bytes - before.mapped_bytes >= 64 * 1024 * 1024
    assert during.mapped_blocks == before.mapped_blocks + 1


def test_limit_arenas_leaves_an_operators_setting_alone():
    code = "from aether import osapi; print(osapi.limit_arenas())"
    for extra, expected in (({}, "True"), ({"MALLOC_ARENA_MAX": "4"}, "False"),
                            ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, "False")):
        env = python_env(extra)
        if not extra:
            env.pop("MALLOC_ARENA_MAX", None)
            env.pop("GLIBC_TUNABLES", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected, extra
