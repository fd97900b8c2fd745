"""osapi.pin_mmap_threshold: large blocks stay mapped blocks (returned to the
kernel when freed) even after glibc would have raised its threshold."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aether.testing import python_env

# After freeing a 16 MiB mapped block, glibc's dynamic threshold is 16 MiB: an
# 8 MiB block then comes from the heap, unless the threshold is pinned. The
# sizes are far above what the interpreter leaves free in its heap (CI once
# found a free chunk big enough for a 512 KiB probe), and the probe checks so.
SCRIPT = r"""
import ctypes, sys
from aether import osapi
pin = sys.argv[1] == "pin"
if pin:
    assert osapi.pin_mmap_threshold()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(16 << 20))
# Give the heap's free top back first: a request the top chunk can hold is
# carved from it whatever the threshold, and how much is free there depends
# on what the interpreter imported.
libc.malloc_trim(0)
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Mallinfo2
size = 8 << 20
free_in_heap = libc.mallinfo2().fordblks
assert free_in_heap < size, f"{free_in_heap} bytes free in the heap: probe too small"
p = libc.malloc(size)
# glibc's chunk header: the size word just before the block; bit 1 is IS_MMAPPED
own_mapping = bool(ctypes.c_size_t.from_address(p - 8).value & 2)
libc.free(p)
print("mapped" if own_mapping else "heap")
"""


def _where(mode: str, extra_env: dict[str, str] | None = None) -> str:
    env = python_env(extra_env)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_large_blocks_stay_mapped_once_pinned():
    if _where("default") != "heap":
        pytest.skip("this C library does not raise its mmap threshold dynamically")
    assert _where("pin") == "mapped"


def test_an_operators_setting_wins():
    env = python_env({"MALLOC_MMAP_THRESHOLD_": "65536"})
    out = subprocess.run(
        [sys.executable, "-c", "from aether import osapi; print(osapi.pin_mmap_threshold())"],
        env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
