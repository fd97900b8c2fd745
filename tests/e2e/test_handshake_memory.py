"""The handshake's pattern test costs the service bounded memory, whatever
the size of the client's blocks: it reads, compares and zeroes them a chunk
at a time. (Whole, a pair of 16 MiB blocks cost it some 48 MiB of
temporaries per handshake: a cheap way for any client to inflate a root
service.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import start_service

import aether

MiB = 1 << 20


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("block_mib", [16])
def test_large_blocks_do_not_inflate_the_service(runtime_dir: Path, block_mib: int) -> None:
    svc = start_service("aether_testsvc:service", runtime_dir / "big.ctl")
    try:
        with aether.Client(svc.socket_path, transport="memory", timeout=30) as warm:
            assert warm.echo(b"warm") == b"warm"  # first-session costs paid
        before = _peak_kib(svc.pid)
        with aether.Client(svc.socket_path, transport="memory", timeout=30,
                           block_size=block_mib * MiB) as client:
            assert client.memory.param.size >= block_mib * MiB
            assert client.echo(b"big blocks") == b"big blocks"
        grown = _peak_kib(svc.pid) - before
        assert grown < 8 * 1024, f"the service's peak grew {grown} KiB in one handshake"
    finally:
        svc.kill()
