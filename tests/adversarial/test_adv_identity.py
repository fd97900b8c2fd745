"""Who the client is, beyond tests/hostile/test_hostile_identity.py
(threats T3, T4, T5, T7, T9, T31).

- T5: the control socket handed to another process with SCM_RIGHTS: the
  session acts only on the connector's memory, and ends when the connector
  exits although the receiver still holds the socket.
- T3/T4: pid reuse staged for real (``ns_last_pid``): the connector exits
  and a new process with *its pid* and pattern-filled blocks *at its
  addresses* appears; the holder of the socket then runs the handshake (T3)
  or an operation (T4). A service that addressed memory by pid would write
  into the newcomer.
- T7: a client of another uid that made itself non-dumpable is refused the
  memory transport, and its blocks are never written.
- T9/T31: impostor services on a user's socket path (squatted directory,
  symlinked directory, world-writable directory, a listener of another uid):
  ``aether.Client`` (``aether.client.trust``) refuses them before sending
  anything (no CLIENT_PID, no block address, no PR_SET_PTRACER).

Each case checks the three security invariants: the victim's memory hash is
unchanged, canary pages around the blocks are intact, and the service still
answers a well-behaved client within 1 s.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import time
from pathlib import Path

import msgspec
import pytest
from adv_support import ATTACKER, NOBODY, Forked, can_choose_pids, take_pid
from rawpeer import DEFAULT_BLOCK, PAGE, Arena, RawPeer, free_address

import aether
import aether_guard.schema
from aether import wire
from aether.osapi import drop_privileges, set_dumpable
from aether.schema import builtins as b, encode
from aether.schema.registry import Registry
from aether.wire import ErrorCode, Status, messages as m

ECHO = 0x0003
ARENA_SIZE = 3 * PAGE + 2 * DEFAULT_BLOCK
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (second uid, ns_last_pid)")


def _adopt(fd: int, path: Path) -> RawPeer:
    """A RawPeer speaking on a received socket descriptor (a duplicate)."""
    sock = socket.socket(fileno=os.dup(fd))
    return RawPeer(path, sock=sock, connect=False)


def _not_success(peer: RawPeer, timeout: float = 3.0) -> tuple[str, int]:
    """Read to the end of the session; no STARTED/DONE may ever say OK."""
    deadline = time.monotonic() + timeout
    while True:
        event = peer.recv(max(0.0, deadline - time.monotonic()))
        if isinstance(event, m.Started | m.Done):
            assert event.status not in (Status.OK, Status.STARTED), event
            continue
        if isinstance(event, m.TestDone):
            assert event.error, "a handshake in someone else's memory succeeded"
            return "test-done", event.error
        if isinstance(event, m.Error):
            return "error", event.error
        if isinstance(event, m.ConnectionClosed | m.Goodbye):
            return "closed", 0


# -- T5: the socket handed over with SCM_RIGHTS ------------------------------------------
def test_socket_passed_by_scm_rights_acts_only_for_the_connector(svc):
    place = free_address(ARENA_SIZE)
    payload = encode(b.Echo(data=b"from the connector"))

    def connector(chan):
        arena = Arena(address=place)
        peer = RawPeer(svc.path)
        peer.handshake(arena)
        arena.write_params(1, ECHO, payload)
        chan.send({"param": arena.param}, fds=(peer.fileno(),))
        chan.recv()  # "look"
        header, data = arena.read_return()
        chan.send({"op_id": header.op_id, "status": header.status, "data": data.hex(),
                   "canaries": arena.canaries_intact()})
        chan.recv()  # "exit"

    child = Forked(connector)
    receiver = None
    try:
        info = child.recv()
        # The receiver holds blocks at the very same addresses, pattern-filled.
        receiver = Arena(address=place)
        assert receiver.param == info["param"]
        before = receiver.digest()
        peer = _adopt(child.chan.fds[-1], svc.path)
        peer.send(m.Execute(1, len(payload)))
        status = peer.recv()
        if isinstance(status, m.Started):
            status = peer.expect(m.Done)
        assert status.status == Status.OK, status
        child.send(cmd="look")
        seen = child.recv()
        # the result went into the connector's return block ...
        assert seen["op_id"] == 1 and seen["status"] == Status.OK and seen["canaries"]
        assert msgspec.msgpack.decode(bytes.fromhex(seen["data"])) == b"from the connector"
        # ... and not one byte into the receiver's
        assert receiver.digest() == before and receiver.holds_pattern()
        child.send(cmd="exit")
        child.result()
        gone = time.monotonic()
        # the connector is gone: the receiver's socket no longer has a session
        peer.send(m.Execute(2, len(payload)))
        _not_success(peer, 2.0)
        assert time.monotonic() - gone < 1.0 + 0.5, "session outlived its connector"
        assert receiver.digest() == before and receiver.canaries_intact()
        peer.close()
    finally:
        child.close()
        if receiver is not None:
            receiver.close()
    svc.assert_serving()


# -- T3/T4: pid reuse staged for real ---------------------------------------------------------
def _newcomer(place: int, fill_op: bytes | None):
    """Body of the process that gets the dead connector's pid: blocks at the
    connector's addresses, holding the pattern (T3) or a zeroed return block
    and a valid parameter block for op 1 (T4), as the connector left them."""

    def body(chan):
        arena = Arena(address=place)
        if fill_op is not None:
            from rawpeer import poke, protect

            protect(arena.param, arena.param_size, 3)
            poke(arena.param, bytes(arena.param_size))
            protect(arena.param, arena.param_size, 1)
            poke(arena.retn, bytes(arena.retn_size))
            arena.write_params(1, ECHO, fill_op)
        chan.send({"pid": os.getpid(), "param": arena.param, "retn": arena.retn,
                   "digest": arena.digest()})
        chan.recv(30)
        chan.send({"digest": arena.digest(), "canaries": arena.canaries_intact()})
        chan.recv(30)

    return body


@needs_root
@pytest.mark.skipif(not can_choose_pids(), reason="cannot write /proc/sys/kernel/ns_last_pid")
@pytest.mark.parametrize("when", ["before_client_pid", "after_handshake"])
def test_pid_reused_by_a_new_process_is_never_touched(svc, when):
    place = free_address(ARENA_SIZE)
    payload = encode(b.Echo(data=b"written into the newcomer?"))

    def connector(chan):
        arena = Arena(address=place)
        peer = RawPeer(svc.path)
        if when == "after_handshake":
            peer.handshake(arena)
            arena.write_params(1, ECHO, payload)
        else:
            peer.hello()
        chan.send({"pid": os.getpid()}, fds=(peer.fileno(),))

    first = Forked(connector)
    newcomer = None
    try:
        first.recv()
        sock_fd = first.chan.fds[-1]
        first.result()  # exited and reaped: its pid is free
        newcomer = take_pid(first.pid, _newcomer(place, payload if when != "before_client_pid"
                                                 else None))
        if newcomer is None:
            pytest.skip(f"pid {first.pid} was taken by another process")
        info = newcomer.recv()
        assert info["pid"] == first.pid
        peer = _adopt(sock_fd, svc.path)
        if when == "before_client_pid":
            # SO_PEERCRED still names pid P, which now is the newcomer
            peer.send(m.ClientPid(first.pid))
            peer.send(m.AddrParam(info["param"], DEFAULT_BLOCK))
            peer.send(m.AddrRetn(info["retn"], DEFAULT_BLOCK))
            peer.send(m.IpcTest())
        else:
            peer.send(m.Execute(1, len(payload)))
        kind, code = _not_success(peer)
        if kind != "closed":
            assert ErrorCode(code) in (ErrorCode.PEER_EXITED, ErrorCode.MEMORY_ACCESS,
                                       ErrorCode.PID_MISMATCH), ErrorCode(code)
        newcomer.send(cmd="digest")
        after = newcomer.recv()
        assert after["digest"] == info["digest"] and after["canaries"]
        peer.close()
    finally:
        first.close()
        if newcomer is not None:
            newcomer.close()
    svc.assert_serving()


# -- T7: a non-dumpable client of another uid ---------------------------------------------------
@needs_root
@pytest.mark.parametrize("when", ["before_connect", "before_client_pid"])
def test_non_dumpable_client_of_another_uid_is_never_written(open_guard, when):
    path = open_guard.path

    def body(chan):
        drop_privileges(NOBODY)
        set_dumpable(True)  # an ordinary user process, until it decides otherwise
        arena = Arena()
        if when == "before_connect":
            set_dumpable(False)
        peer = RawPeer(path)
        peer.hello()
        if when == "before_client_pid":
            set_dumpable(False)
        peer.send(m.ClientPid(os.getpid()))
        peer.send(m.AddrParam(arena.param, arena.param_size))
        peer.send(m.AddrRetn(arena.retn, arena.retn_size))
        peer.send(m.IpcTest())
        kind, code = peer.outcome()
        return {"kind": kind, "code": code, "pattern": arena.holds_pattern(),
                "canaries": arena.canaries_intact()}

    child = Forked(body)
    try:
        out = child.result()
    finally:
        child.close()
    assert out["kind"] in ("error", "test-done"), out
    assert ErrorCode(out["code"]) == ErrorCode.MEMORY_ACCESS, out
    assert out["pattern"] and out["canaries"], "the service wrote into a non-dumpable process"
    open_guard.assert_serving()


# -- T9/T31: impostor services on a user's socket path -------------------------------------------
def _impostor(path: Path, *, bind_as_root: bool = False):
    """An attacker (uid ATTACKER) listening at ``path`` and greeting every
    connection with a valid HELLO; reports every datagram it received."""

    def body(chan):
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if bind_as_root:
            srv.bind(str(path))
            os.chown(path, NOBODY, NOBODY)
        drop_privileges(ATTACKER)
        if not bind_as_root:
            srv.bind(str(path))
            os.chmod(path, 0o777)
        srv.listen(8)  # SO_PEERCRED of the server end: whoever called listen()
        chan.send({"ready": True})
        conns: list[socket.socket] = []
        got: list[str] = []
        fingerprint = Registry.from_modules(aether_guard.schema).fingerprint()
        hello = wire.encode(m.Hello(wire.PROTOCOL_VERSION, fingerprint, 1))
        while True:
            ready, _, _ = select.select([srv, chan.sock, *conns], [], [], 20)
            if not ready:
                return got
            if chan.sock in ready:
                chan.recv()  # read "report" before answering: unread data makes a reset
                return got
            for s in ready:
                if s is srv:
                    conn, _ = srv.accept()
                    try:
                        conn.send(hello)
                    except OSError:  # the client already hung up: fine
                        pass
                    conns.append(conn)
                    got.append("connect")
                else:
                    try:
                        data = s.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if data:
                        got.append(data.hex())
                    else:
                        conns.remove(s)

    return body


def _victim_client(path: Path):
    def body(chan):
        drop_privileges(NOBODY)
        set_dumpable(True)
        try:
            with aether.Client(path, schema=aether_guard.schema, timeout=2.0) as client:
                return f"trusted ({client.transport})"
        except aether.AetherError as exc:
            return f"{type(exc).__name__}: {exc}"

    return body


IMPOSTOR_SETUPS = ["dir_owned_by_attacker", "symlinked_dir", "world_writable_dir",
                   "listener_of_another_uid"]


@needs_root
@pytest.mark.parametrize("setup", IMPOSTOR_SETUPS)
def test_client_refuses_an_impostor_on_its_user_socket_path(svc, setup):
    base = Path(tempfile.mkdtemp(prefix="aether-adv-imp-"))
    os.chmod(base, 0o1777)  # like /tmp: anyone may create, nobody may replace
    attacker_dir = base / "attacker"
    victim_dir = base / "victim"
    try:
        if setup in ("dir_owned_by_attacker", "symlinked_dir"):
            attacker_dir.mkdir(mode=0o755)
            os.chown(attacker_dir, ATTACKER, ATTACKER)
            sock_path = attacker_dir / "guard.ctl"
            target = sock_path
            if setup == "symlinked_dir":
                victim_dir.symlink_to(attacker_dir)
                os.chown(victim_dir, NOBODY, NOBODY, follow_symlinks=False)
                target = victim_dir / "guard.ctl"
            impostor = _impostor(sock_path)
        elif setup == "world_writable_dir":
            victim_dir.mkdir()
            os.chmod(victim_dir, 0o777)
            os.chown(victim_dir, NOBODY, NOBODY)
            target = sock_path = victim_dir / "guard.ctl"
            impostor = _impostor(sock_path)
        else:
            victim_dir.mkdir(mode=0o700)
            os.chown(victim_dir, NOBODY, NOBODY)
            target = sock_path = victim_dir / "guard.ctl"
            impostor = _impostor(sock_path, bind_as_root=True)
        attacker = Forked(impostor)
        try:
            assert attacker.recv()["ready"]
            victim = Forked(_victim_client(target))
            try:
                said = victim.result()
            finally:
                victim.close()
            attacker.send(cmd="report")
            got = attacker.result()
        finally:
            attacker.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert "refusing to trust" in said, said
    # the client sent nothing at all: no CLIENT_PID, no block address
    assert all(entry == "connect" for entry in got), got
    svc.assert_serving()


# -- T3 on kernels without SO_PEERPIDFD: the memory transport is refused -------------------
def test_without_peer_pidfd_memory_transport_is_refused(tmp_path):
    """Where the kernel cannot give the peer's pidfd end to end, a pidfd
    opened from the pid number would leave the reuse window of T3 open: the
    service does not offer the memory transport at all, a raw CLIENT_PID is
    a protocol error and touches nothing, and aether.Client falls back to a
    transport that needs no cross-process memory access, with the reason."""
    import adversarial_targets as at
    from adv_support import HERE, HOSTILE
    from hostile_support import Svc

    from aether.testing import python_env
    from aether.wire import Transport

    class NoPidfdSvc(Svc):
        def client(self, timeout: float = 1.0) -> aether.Client:
            return aether.Client(self.path, schema=at.SCHEMAS, transport="auto",
                                 timeout=timeout)

        def assert_serving(self) -> None:
            with self.client() as c:
                assert c.transport != "memory" and c.echo(b"ok") == b"ok"

    os.chmod(tmp_path, 0o700)
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), str(HOSTILE), python_env()["PYTHONPATH"]])}
    service = NoPidfdSvc("adversarial_targets:nopidfd", tmp_path / "nopidfd.ctl", env=env)
    service.start()
    arena = Arena()
    try:
        with RawPeer(service.path) as peer:
            hello = peer.hello()
            assert not hello.transports & Transport.MEMORY, hello
            peer.send(m.ClientPid(os.getpid()))
            peer.send(m.AddrParam(arena.param, arena.param_size))
            peer.send(m.AddrRetn(arena.retn, arena.retn_size))
            peer.send(m.IpcTest())
            kind, code = peer.outcome()
            assert kind == "error" and ErrorCode(code) == ErrorCode.PROTOCOL, (kind, code)
        assert arena.holds_pattern() and arena.canaries_intact()
        with service.client() as client:  # the mapping transport needs no pidfd
            assert client.transport in ("mapping", "socket") and client.fallback_reason
            assert client.echo(b"not over memory") == b"not over memory"
    finally:
        arena.close()
        service.stop()
