"""Crashes at every step (threats T4, T26, T30; docs/protocol.md H1-H8, O1-O4).

tests/hostile/test_hostile_kills.py SIGKILLs a client after HELLO,
CLIENT_PID, ADDR_RETN and mid-operation. Here every step of the handshake
and of an operation, with SIGKILL *and* SIGSTOP:

- SIGKILL: the session is freed within 1 s (the service's threads and
  descriptors back to idle, no /proc/<pid>/mem of the dead client open);
- SIGSTOP during the handshake: the handshake timeout (0.5 s for this
  service) ends the half-open session; a stopped client with a complete
  session keeps it (it is alive) without blocking anyone, and its session is
  freed within 1 s of its SIGKILL;
- all the while, a well-behaved client is served within 1 s;

and the service itself killed mid-operation: the raw client never sees a
success status in its return block, ``aether.Client`` reports the outcome as
unknown (``OutcomeUnknownError``), never success, and after a restart a new
client is served within 1 s of the service's READY.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from adv_support import RING, Forked, MappedPeer
from hostile_support import Svc
from rawpeer import Arena, RawPeer

import aether
import aether_guard.schema
from aether import wire
from aether.osapi.fdpass import recv_fds
from aether.schema import builtins as b, encode
from aether.schema.params import spec_of
from aether.testing import wait_until
from aether.transport.mapping import MappingClientSide
from aether.wire import FrameKind, Status, messages as m
from aether_guard.schema import HashTree

HASH_TREE = spec_of(HashTree).code  # guard.hash_tree, whatever its number
STAGES = ["connected", "hello", "client_pid", "addr_param", "addr_retn", "ipc_test",
          "test_verified", "op_started", "op_progress", "map_ready", "map_op"]
HALF_OPEN = {"connected", "hello", "client_pid", "addr_param", "addr_retn", "ipc_test",
             "map_ready"}


def _stage_client(path: Path, stage: str, tree: Path):
    """A raw client that stops right after ``stage`` and waits to be signalled."""

    def body(chan):
        if stage.startswith("map_"):
            return _mapped_stage(chan, path, stage, tree)
        arena = Arena()
        peer = RawPeer(path)
        steps = [
            ("hello", lambda: peer.hello()),
            ("client_pid", lambda: peer.send(m.ClientPid(os.getpid()))),
            ("addr_param", lambda: peer.send(m.AddrParam(arena.param, arena.param_size))),
            ("addr_retn", lambda: peer.send(m.AddrRetn(arena.retn, arena.retn_size))),
            ("ipc_test", lambda: (peer.send(m.IpcTest()), peer.expect(m.TestDone))),
            ("test_verified", lambda: peer.send(m.TestVerified(0))),
        ]
        if stage != "connected":
            for name, step in steps:
                step()
                if name == stage:
                    break
            else:
                payload = encode(HashTree(root=str(tree)))
                arena.write_params(1, HASH_TREE, payload)
                peer.send(m.Execute(1, len(payload)))
                assert peer.expect(m.Started).status == Status.STARTED
                if stage == "op_progress":
                    peer.expect(m.Progress)
        chan.send({"at": stage})
        chan.recv(60)  # never comes: the test kills us

    return body


def _mapped_stage(chan, path: Path, stage: str, tree: Path) -> None:
    """The mapping transport's steps: MAP_READY received (region mapped, no
    TEST_VERIFIED yet), or an operation running through the rings."""
    if stage == "map_ready":
        peer = RawPeer(path)
        peer.hello()
        peer.send(m.MapMode(RING))
        data, fds = recv_fds(peer.sock, 4096, 3)
        ready = wire.decode(data)
        side = MappingClientSide(fds, ready.ring_size, ready.region_size)
    else:
        client = MappedPeer(path)
        client.execute(1, encode(HashTree(root=str(tree))), op_code=HASH_TREE)
        kind, _, status, _ = client.reply()
        assert (kind, status) == (FrameKind.STARTED, Status.STARTED)
        side = client.side
    chan.send({"at": stage, "region": side.region.fd})
    chan.recv(60)


def _holds_mem_of(svc: Svc, pid: int) -> bool:
    want = f"/proc/{pid}/mem"
    for fd in os.listdir(f"/proc/{svc.pid}/fd"):
        try:
            if os.readlink(f"/proc/{svc.pid}/fd/{fd}") == want:
                return True
        except OSError:
            continue
    return False


def _freed_within(svc: Svc, pid: int, budget: float) -> None:
    t0 = time.monotonic()
    svc.wait_footprint(timeout=budget + 1.0)  # measured below, generous only for CI noise
    took = time.monotonic() - t0
    assert not _holds_mem_of(svc, pid)
    assert took < budget, f"session freed after {took:.2f} s (budget {budget} s)"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
def test_client_signalled_at_every_step(short, slow_tree, stage, sig):
    client = Forked(_stage_client(short.path, stage, slow_tree))
    try:
        assert client.recv()["at"] == stage
        if sig == "SIGKILL":
            client.kill(signal.SIGKILL)
            client.reap()
            _freed_within(short, client.pid, 1.0)
        else:
            client.kill(signal.SIGSTOP)
            short.assert_serving()  # a stopped client blocks nobody
            if stage in HALF_OPEN:
                # the handshake timeout (0.5 s) ends the half-open session
                _freed_within(short, client.pid, 0.5 + 1.0)
            else:
                # a complete session of a live (stopped) process stays
                st = short.status()
                assert client.pid in [s.pid for s in st.session_list], st.session_list
            client.kill(signal.SIGKILL)
            client.reap()
            _freed_within(short, client.pid, 1.0)
    finally:
        client.close()
    short.assert_serving()


# -- the service killed mid-operation, then restarted ----------------------------------------
@pytest.fixture
def own_guard(tmp_path_factory) -> Svc:
    directory = tmp_path_factory.mktemp("killed")
    os.chmod(directory, 0o700)
    service = Svc("guard", directory / "guard.ctl")
    service.start()
    yield service
    service.stop()


def test_service_killed_mid_operation_raw_client_never_sees_success(own_guard, slow_tree):
    arena = Arena()
    try:
        with RawPeer(own_guard.path) as peer:
            peer.handshake(arena)
            payload = encode(HashTree(root=str(slow_tree)))
            arena.write_params(1, HASH_TREE, payload)
            peer.send(m.Execute(1, len(payload)))
            assert peer.expect(m.Started).status == Status.STARTED
            peer.expect(m.Progress)
            own_guard.proc.kill()
            assert peer.outcome(2.0) == ("closed", 0)
            header, _ = arena.read_return()
            assert header.op_id == 1 and header.status == Status.STARTED, header
        assert arena.canaries_intact()
    finally:
        arena.close()


def test_service_killed_mid_operation_client_outcome_unknown_then_restart(own_guard,
                                                                          slow_tree):
    outcome: dict[str, object] = {}
    client = aether.Client(own_guard.path, schema=aether_guard.schema, transport="memory")
    started = threading.Event()

    def call() -> None:
        try:
            op = client.start(HashTree(root=str(slow_tree)))
            started.set()
            outcome["result"] = op.wait(30)
        except BaseException as exc:  # what the caller would see
            outcome["error"] = exc
        finally:
            started.set()

    worker = threading.Thread(target=call)
    worker.start()
    assert started.wait(10)
    wait_until(lambda: any(s.running == "guard.hash_tree" for s in own_guard.status()
                           .session_list), 5.0, "hash_tree to run", watch_pid=own_guard.pid)
    own_guard.proc.kill()
    worker.join(10)
    assert not worker.is_alive()
    client.close()
    assert "result" not in outcome, "an operation whose service died reported success"
    assert isinstance(outcome["error"], aether.OutcomeUnknownError), outcome
    # restart on the same path (the dead service's socket file is stale)
    own_guard.start()
    t0 = time.monotonic()
    with own_guard.client() as again:
        assert again.call(b.Echo(data=b"back"), timeout=1.0) == b"back"
    assert time.monotonic() - t0 < 1.0


# -- a lock owner killed in the primitives (T37) ---------------------------------------------
def test_mapping_closer_killed_holding_the_exclusive_lock(runtime_dir):
    """The last holder of a named mapping turns its lease into the exclusive
    lock to remove the name (_mapping_store rule 4), and is stopped right
    there, then killed. An opener meanwhile waits (the lock is held by a live
    process); once the holder dies the kernel drops the lock and the opener
    goes on at once: no deadlock, and the name is usable again."""
    import fcntl

    from aether.primitives.mapping import FileMapping

    name = "Local\\adv-lock"

    def holder(chan):
        mapping = FileMapping.create(name, 4096)
        lease_fd = mapping._lease.fd  # the handle's own lease (rule 2)
        fcntl.flock(lease_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # rule 4's conversion
        chan.send({"locked": True})
        chan.recv(60)  # killed here, holding the exclusive lock

    child = Forked(holder)
    opened: dict[str, object] = {}
    try:
        assert child.recv()["locked"]
        child.kill(signal.SIGSTOP)

        def opener() -> None:
            try:
                with FileMapping.open_or_create(name, 4096) as m:
                    opened["created"] = m.created
            except BaseException as exc:
                opened["error"] = exc

        worker = threading.Thread(target=opener)
        worker.start()
        worker.join(0.3)
        assert worker.is_alive(), "the open did not wait for the lock holder"
        child.kill(signal.SIGKILL)
        t0 = time.monotonic()
        child.reap()
        worker.join(5.0)
        assert not worker.is_alive(), "deadlock after the lock owner died"
        assert time.monotonic() - t0 < 1.0
    finally:
        child.close()
    assert "error" not in opened, opened
    with FileMapping.open_or_create(name, 4096) as again:
        assert again.size >= 4096
