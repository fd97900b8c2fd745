"""Where the blocks are: only two private anonymous non-executable ranges of
the verified client's own memory are ever written (threats T10-T13;
docs/protocol.md H4, H5 and the check_block/check_pair rules of §5.3).

The attacker is this test process. Every bad block is offered with the
pattern in it where that is possible (so only the checks can stop the
pattern test from writing zeros there), and afterwards the files, the extra
mappings, the arena's blocks and its canary pages are all unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from rawpeer import (
    DEFAULT_BLOCK,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE,
    PATTERN_WORD,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    Arena,
    RawPeer,
    map_memory,
    mapped_in_self,
    peek,
    poke,
    protect,
    remap_fixed,
    unmap,
)

import aether
import aether_guard.schema
from aether import wire
from aether.schema import builtins as b, encode, spec_of
from aether.wire import ErrorCode, Status, messages as m

RW = PROT_READ | PROT_WRITE
HASH_TREE = spec_of(aether_guard.schema.HashTree).code
N = DEFAULT_BLOCK
LIMIT = wire.MAX_BLOCK_SIZE  # the service's default max block (16 MiB)


class Mapper:
    """Extra mappings of this process, each remembered with its content."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.maps: list[tuple[int, int]] = []
        self.filled: list[tuple[int, int, bytes]] = []  # (address, size, sha256)
        self.files: list[tuple[Path, bytes]] = []

    def _remember(self, addr: int, size: int) -> int:
        self.maps.append((addr, size))
        if peek_ok(addr):
            self.filled.append((addr, size, hashlib.sha256(peek(addr, size)).digest()))
        return addr

    def anon(self, size: int, prot: int = RW) -> int:
        addr = map_memory(size, RW)
        poke(addr, PATTERN_WORD * (size // 4))
        if prot != RW:
            protect(addr, size, prot)
        return self._remember(addr, size)

    def file(self, size: int, flags: int, prot: int = RW, *, readonly: bool = False) -> int:
        path = self.tmp_path / f"mapped{len(self.files)}.dat"
        content = PATTERN_WORD * (size // 4)
        path.write_bytes(content)
        self.files.append((path, hashlib.sha256(content).digest()))
        fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        try:
            addr = map_memory(size, prot, flags, fd)
        finally:
            os.close(fd)
        return self._remember(addr, size)

    def reserve(self, size: int) -> int:
        """An address range that is certainly not mapped."""
        addr = map_memory(size, RW)
        unmap(addr, size)
        assert not mapped_in_self(addr, size)
        return addr

    def check_unchanged(self) -> None:
        for addr, size, digest in self.filled:
            assert hashlib.sha256(peek(addr, size)).digest() == digest, hex(addr)
        for path, digest in self.files:
            assert hashlib.sha256(path.read_bytes()).digest() == digest, path

    def close(self) -> None:
        for addr, size in self.maps:
            unmap(addr, size)


def peek_ok(addr: int) -> bool:
    with open("/proc/self/maps", encoding="ascii") as fh:
        for line in fh:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= addr < hi:
                return perms[0] == "r"
    return False


@pytest.fixture
def mapper(tmp_path: Path) -> Iterator[Mapper]:
    mp = Mapper(tmp_path)
    yield mp
    mp.close()


@pytest.fixture
def arena() -> Iterator[Arena]:
    a = Arena()
    yield a
    a.close()


@dataclass
class Bad:
    param: tuple[int, int]
    retn: tuple[int, int]
    code: ErrorCode


def _stack_range() -> int:
    with open("/proc/self/maps", encoding="ascii") as fh:
        for line in fh:
            if line.rstrip().endswith("[stack]"):
                return int(line.split("-")[0], 16)
    raise AssertionError("no [stack] mapping")


def _two_mappings(mp: Mapper) -> int:
    addr = mp.anon(2 * N)
    protect(addr + N, N, PROT_READ)  # one range, two VMAs
    return addr


def _half_mapped(mp: Mapper) -> int:
    addr = map_memory(2 * N, RW)
    unmap(addr + N, N)
    poke(addr, PATTERN_WORD * (N // 4))
    mp._remember(addr, N)
    return addr


CASES: dict[str, Callable[[Mapper, Arena], Bad]] = {
    # file-backed mappings (T10): writes would reach the file
    "param_in_private_file": lambda mp, a: Bad(
        (mp.file(N, MAP_PRIVATE, PROT_READ), N), (a.retn, N), ErrorCode.BAD_BLOCK),
    "retn_in_private_file": lambda mp, a: Bad(
        (a.param, N), (mp.file(N, MAP_PRIVATE), N), ErrorCode.BAD_BLOCK),
    "param_in_shared_file": lambda mp, a: Bad(
        (mp.file(N, MAP_SHARED), N), (a.retn, N), ErrorCode.BAD_BLOCK),
    "retn_in_shared_file": lambda mp, a: Bad(
        (a.param, N), (mp.file(N, MAP_SHARED), N), ErrorCode.BAD_BLOCK),
    "retn_in_readonly_shared_file": lambda mp, a: Bad(
        (a.param, N), (mp.file(N, MAP_SHARED, PROT_READ, readonly=True), N),
        ErrorCode.BAD_BLOCK),
    # executable memory
    "param_executable": lambda mp, a: Bad(
        (mp.anon(N, PROT_READ | PROT_EXEC), N), (a.retn, N), ErrorCode.BAD_BLOCK),
    "retn_executable": lambda mp, a: Bad(
        (a.param, N), (mp.anon(N, RW | PROT_EXEC), N), ErrorCode.BAD_BLOCK),
    # not (wholly) mapped
    "param_unmapped": lambda mp, a: Bad((mp.reserve(N), N), (a.retn, N), ErrorCode.BAD_BLOCK),
    "retn_unmapped": lambda mp, a: Bad((a.param, N), (mp.reserve(N), N), ErrorCode.BAD_BLOCK),
    "retn_half_mapped": lambda mp, a: Bad(
        (a.param, N), (_half_mapped(mp), 2 * N), ErrorCode.BAD_BLOCK),
    "retn_across_two_mappings": lambda mp, a: Bad(
        (a.param, N), (_two_mappings(mp), 2 * N), ErrorCode.BAD_BLOCK),
    "retn_on_the_stack": lambda mp, a: Bad(
        (a.param, N), (_stack_range(), N), ErrorCode.BAD_BLOCK),
    "retn_kernel_address": lambda mp, a: Bad(
        (a.param, N), (0xFFFF_8000_0000_0000, N), ErrorCode.BAD_BLOCK),
    # overlapping
    "same_block_twice": lambda mp, a: Bad((a.retn, N), (a.retn, N), ErrorCode.BAD_BLOCK),
    "overlapping_blocks": lambda mp, a: Bad(
        (a.retn, N), (a.retn + PAGE, N - PAGE), ErrorCode.BAD_BLOCK),
    "retn_inside_param": lambda mp, a: Bad(
        (a.base, a.total), (a.retn, N), ErrorCode.BAD_BLOCK),
    # sizes
    "param_over_limit": lambda mp, a: Bad(
        (mp.anon(LIMIT + PAGE), LIMIT + PAGE), (a.retn, N), ErrorCode.BLOCK_TOO_LARGE),
    "retn_over_limit": lambda mp, a: Bad(
        (a.param, N), (mp.anon(LIMIT + PAGE), LIMIT + PAGE), ErrorCode.BLOCK_TOO_LARGE),
    "size_2_63": lambda mp, a: Bad((a.param, 1 << 63), (a.retn, N), ErrorCode.BLOCK_TOO_LARGE),
    "size_u64_max": lambda mp, a: Bad(
        (a.param, N), (a.retn, (1 << 64) - 1), ErrorCode.BLOCK_TOO_LARGE),
    "param_zero_size": lambda mp, a: Bad((a.param, 0), (a.retn, N), ErrorCode.BAD_BLOCK),
    "retn_zero_size": lambda mp, a: Bad((a.param, N), (a.retn, 0), ErrorCode.BAD_BLOCK),
    "header_only_size": lambda mp, a: Bad(
        (a.param, wire.HEADER_SIZE), (a.retn, N), ErrorCode.BAD_BLOCK),
    # alignment and address arithmetic
    "param_not_page_aligned": lambda mp, a: Bad(
        (a.param + 8, N - PAGE), (a.retn, N), ErrorCode.BAD_BLOCK),
    "retn_size_not_page_multiple": lambda mp, a: Bad(
        (a.param, N), (a.retn, N - 8), ErrorCode.BAD_BLOCK),
    "null_address": lambda mp, a: Bad((0, N), (a.retn, N), ErrorCode.BAD_BLOCK),
    "wrap_around": lambda mp, a: Bad(
        (a.param, N), ((1 << 64) - 2 * PAGE, 4 * PAGE), ErrorCode.BAD_BLOCK),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_block_is_refused_and_nothing_written(svc, mapper, arena, case):
    bad = CASES[case](mapper, arena)
    with RawPeer(svc.path) as peer:
        peer.hello()
        peer.send(m.ClientPid(os.getpid()))  # H3
        peer.send(m.AddrParam(*bad.param))  # H4
        peer.send(m.AddrRetn(*bad.retn))  # H5
        peer.send(m.IpcTest())  # H6 (the service must never get there)
        peer.expect_error(bad.code)  # (a)
    mapper.check_unchanged()  # (c): files and extra mappings
    assert arena.holds_pattern() and arena.canaries_intact()  # (c)
    svc.assert_serving()  # (b)


# -- after the maps check: it is hygiene, the /proc/<pid>/mem fd is the boundary ----------
def _remap_retn(arena: Arena, mapper: Mapper, how: str) -> Path | None:
    """Replace the registered return block after H5 (a TOCTOU on the maps check)."""
    if how == "unmapped":
        unmap(arena.retn, N)
        return None
    path = mapper.tmp_path / f"precious-{how}.dat"
    path.write_bytes(os.urandom(N))
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = MAP_SHARED if how == "readonly_shared_file" else MAP_PRIVATE
        remap_fixed(arena.retn, N, PROT_READ, flags, fd)
    finally:
        os.close(fd)
    return path


@pytest.mark.parametrize("how", ["unmapped", "readonly_shared_file", "readonly_private_file"])
@pytest.mark.parametrize("op", ["echo", "hash_tree", "unknown_op"])
def test_return_block_remapped_after_handshake(svc, mapper, arena, tmp_path, how, op):
    """The client swaps its return block for something else after the maps
    check. Through the handshake's /proc/<pid>/mem fd the service can reach
    only this client's own memory: a read-only shared file mapping refuses
    the write (MEMORY_ACCESS), a private one gets a private copy (the file
    is never written), an unmapped range fails. Either way a typed error or
    a result in the client's own memory, and the file unchanged."""
    payload = {"echo": (0x0003, encode(b.Echo(data=b"x"))),
               "hash_tree": (HASH_TREE, encode({"root": str(tmp_path)})),
               "unknown_op": (0x7777, b"")}[op]
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        path = _remap_retn(arena, mapper, how)
        before = path.read_bytes() if path else b""
        arena.write_params(1, payload[0], payload[1])
        peer.send(m.Execute(1, len(payload[1])))
        if how == "readonly_private_file":
            # FOLL_FORCE writes land in a private copy: the client hurt only itself.
            first = peer.recv()
            assert isinstance(first, m.Started | m.Done), first
            if isinstance(first, m.Started) and first.status == Status.STARTED:
                assert isinstance(peer.recv(5.0), m.Done | m.Progress)
        else:
            peer.expect_error(ErrorCode.MEMORY_ACCESS)
    if path is not None:
        assert path.read_bytes() == before
    assert arena.canaries_intact()
    svc.assert_serving()


def test_reregistration_checks_the_new_blocks(svc, mapper, arena):
    """O6: registering fresh blocks in IDLE goes through H4-H8 again; a file
    mapping is refused there too, and the old blocks are not written."""
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        status, _, data = peer.execute(arena, 1, 0x0003, encode(b.Echo(data=b"one")))
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"one"
        snapshot = (arena.param_bytes(), arena.retn_bytes())
        shared = mapper.file(N, MAP_SHARED)
        peer.send(m.AddrParam(arena.param, N))  # O6
        peer.send(m.AddrRetn(shared, N))
        peer.send(m.IpcTest())
        peer.expect_error(ErrorCode.BAD_BLOCK)
    assert (arena.param_bytes(), arena.retn_bytes()) == snapshot
    mapper.check_unchanged()
    assert arena.canaries_intact()
    svc.assert_serving()


def test_client_over_block_limit_always_gets_the_reason(svc):
    """aether.Client pipelines H4-H6; when H4 refuses the block the service
    closes with H5/H6 unread. The typed reason must still arrive, every time
    (the kernel reports ECONNRESET ahead of the queued ERROR)."""
    for _ in range(20):
        with pytest.raises(aether.HandshakeError) as info:
            aether.Client(svc.path, schema=aether_guard.schema, transport="memory",
                          block_size=2 * LIMIT)
        assert info.value.reason == "block-too-large", info.value
    svc.assert_serving()


def test_after_reregistration_old_blocks_are_never_written(svc, arena):
    """O6 with good blocks: from then on only the new blocks are written; the
    old ones (still mapped, still this client's) keep their bytes."""
    fresh = Arena(2 * N, 2 * N)
    try:
        with RawPeer(svc.path) as peer:
            peer.handshake(arena)
            status, _, _ = peer.execute(arena, 1, 0x0003, encode(b.Echo(data=b"old")))
            assert status == Status.OK
            old = (arena.param_bytes(), arena.retn_bytes())
            peer.send(m.AddrParam(fresh.param, fresh.param_size))  # O6: H4-H8 again
            peer.send(m.AddrRetn(fresh.retn, fresh.retn_size))
            peer.send(m.IpcTest())
            assert peer.expect(m.TestDone).error == 0
            assert fresh.holds_zeros()
            peer.send(m.TestVerified(0))
            status, _, data = peer.execute(fresh, 2, 0x0003,
                                           encode(b.Echo(data=b"new" * 3000)))
            assert status == Status.OK and msgspec.msgpack.decode(data) == b"new" * 3000
        assert (arena.param_bytes(), arena.retn_bytes()) == old
        assert arena.canaries_intact() and fresh.canaries_intact()
    finally:
        fresh.close()
    svc.assert_serving()
