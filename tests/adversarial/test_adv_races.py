"""Races on the client's memory while the service works on it (threats T14,
T15; docs/protocol.md O1/O2 "read once", O4).

tests/hostile covers a single swap after EXECUTE and remapping the return
block before an operation. Here the client races the service for real:

- a thread flips the whole parameter block (header and payload) between two
  self-consistent operations of different lengths, as fast as it can, while
  the service reads it: every answer must be exactly one of the two (one
  consistent snapshot: the copy is validated, the block never re-read), or a
  protocol error for a torn copy; never a mixture, never a crash;
- a thread unmaps and remaps the parameter block in a loop during EXECUTEs;
- the return block is unmapped, or replaced by a read-only file mapping, in
  the middle of a running operation; the service's next write (progress or
  the final status) fails cleanly (MEMORY_ACCESS), the file is unchanged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import msgspec
import pytest
from rawpeer import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    Arena,
    RawPeer,
    poke,
    protect,
    remap_fixed,
    unmap,
)

from aether import wire
from aether.schema import builtins as b, encode
from aether.schema.params import spec_of
from aether.wire import ErrorCode, Status, messages as m
from aether_guard.schema import HashTree

ECHO = 0x0003
HASH_TREE = spec_of(HashTree).code  # guard.hash_tree, whatever its number


@pytest.fixture
def arena() -> Iterator[Arena]:
    a = Arena()
    yield a
    a.close()


def _image(op_id: int, data: bytes) -> bytes:
    payload = encode(b.Echo(data=data))
    return wire.ParamHeader.for_payload(op_id, ECHO, payload).pack() + payload


def test_parameters_flipped_by_a_thread_give_one_consistent_snapshot(svc):
    """Two valid images of the same length (each with its own crc): a copy
    taken mid-flip mixes them and fails its crc (PROTOCOL, the session ends;
    the test reconnects); every copy that passes is all-A or all-B."""
    a_data, b_data = b"A" * 3000, b"B" * 3000
    seen = {"A": 0, "B": 0, "torn": 0}
    done = 0
    while done < 60:
        arena = Arena()
        try:
            with RawPeer(svc.path) as peer:
                peer.handshake(arena)
                protect(arena.param, arena.param_size, PROT_READ | PROT_WRITE)
                for op_id in range(1, 61 - done + 1):
                    images = [_image(op_id, a_data), _image(op_id, b_data)]
                    poke(arena.param, images[0])
                    stop = threading.Event()

                    def flip(images=images, stop=stop, param=arena.param) -> None:
                        i = 0
                        while not stop.is_set():
                            i ^= 1
                            poke(param, images[i])

                    flipper = threading.Thread(target=flip)
                    flipper.start()
                    try:
                        peer.send(m.Execute(op_id, len(images[0]) - wire.HEADER_SIZE))
                        event = peer.recv()
                    finally:
                        stop.set()
                        flipper.join()
                    done += 1
                    if isinstance(event, m.Error):
                        assert event.error == ErrorCode.PROTOCOL, event
                        assert peer.outcome() == ("closed", 0)
                        seen["torn"] += 1
                        break
                    assert isinstance(event, m.Done) and event.status == Status.OK, event
                    header, data = arena.read_return()
                    assert header.op_id == op_id and wire.crc32(data) == header.crc
                    got = msgspec.msgpack.decode(data)
                    assert got in (a_data, b_data), f"a mixture was decoded: {got[:60]!r}"
                    seen["A" if got == a_data else "B"] += 1
            assert arena.canaries_intact()
        finally:
            arena.close()
    assert sum(seen.values()) >= 60 and seen["A"] + seen["B"] > 0, seen
    svc.assert_serving()


def test_parameter_block_unmapped_and_remapped_during_executes(svc, arena):
    payload = encode(b.Echo(data=b"still there?"))
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        results = []
        for op_id in range(1, 31):
            arena.write_params(op_id, ECHO, payload)
            image = wire.ParamHeader.for_payload(op_id, ECHO, payload).pack() + payload
            stop = threading.Event()

            def churn(image=image, stop=stop) -> None:
                while not stop.is_set():
                    remap_fixed(arena.param, arena.param_size, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS)  # a fresh, empty page range
                    poke(arena.param, image)

            worker = threading.Thread(target=churn)
            worker.start()
            try:
                peer.send(m.Execute(op_id, len(payload)))
                event = peer.recv()
            finally:
                stop.set()
                worker.join()
            if isinstance(event, m.Error):  # read while empty: a bad header, fatal
                assert event.error in (ErrorCode.PROTOCOL, ErrorCode.MEMORY_ACCESS), event
                results.append("refused")
                break
            assert isinstance(event, m.Done) and event.status == Status.OK, event
            _, data = arena.read_return()
            assert msgspec.msgpack.decode(data) == b"still there?"
            results.append("ok")
    assert results
    assert arena.canaries_intact()
    svc.assert_serving()


@pytest.mark.parametrize("how", ["unmapped", "readonly_shared_file"])
def test_return_block_taken_away_mid_operation(svc, arena, slow_tree, tmp_path, how):
    file_path = tmp_path / "behind.bin"
    content = os.urandom(arena.retn_size)
    file_path.write_bytes(content)
    payload = encode(HashTree(root=str(slow_tree)))
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        arena.write_params(1, HASH_TREE, payload)
        peer.send(m.Execute(1, len(payload)))
        started = peer.expect(m.Started)
        assert started.status == Status.STARTED
        peer.expect(m.Progress)  # the handler runs and has written progress once
        if how == "unmapped":
            unmap(arena.retn, arena.retn_size)
        else:
            fd = os.open(file_path, os.O_RDONLY)
            try:
                remap_fixed(arena.retn, arena.retn_size, PROT_READ, MAP_SHARED, fd)
            finally:
                os.close(fd)
        peer.send(m.Cancel(1))  # the service must now write CANCELLED: it cannot
        kind, code = peer.outcome(5.0)
        assert (kind, ErrorCode(code)) == ("error", ErrorCode.MEMORY_ACCESS), (kind, code)
    assert file_path.read_bytes() == content  # the file behind was never written
    assert arena.canaries_intact()
    svc.assert_serving()
