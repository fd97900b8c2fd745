"""Who the client is: identity from the kernel, never from CLIENT_PID
(threats T1, T2, T5, T6; docs/protocol.md H3, H5, O1, and "a session ends
when the connecting process exits").

The attacker is this test process; victims and forking clients are separate
processes (peers/*.py) that report their memory's hash over a pipe.
Threat-model cases: T1 (claimed pid), T2 (planted pattern), T5 (socket kept
by a child after the connector exits), T6 (exec after the handshake: the
/proc/<pid>/mem fd reaches nothing; exec of a set-uid program before it:
refused at H3).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hostile_support import Svc
from rawpeer import DEFAULT_BLOCK, PAGE, Arena, RawPeer, free_address, mapped_in_self

from aether.schema import builtins as b, encode
from aether.wire import ErrorCode, Status, messages as m


def _try_handshake(peer: RawPeer, pid: int, param: int, retn: int, size: int) -> None:
    """H1-H6 as an attacker sends them: no waiting for replies in between."""
    peer.hello()
    peer.send(m.ClientPid(pid))
    peer.send(m.AddrParam(param, size))
    peer.send(m.AddrRetn(retn, size))
    peer.send(m.IpcTest())


# -- case 1: a claimed pid that is not the caller's (T1, H3) ----------------------------
@pytest.mark.parametrize("whose", ["victim", "init", "service", "parent"])
def test_claimed_pid_of_another_process_is_pid_mismatch(svc, victim, whose):
    pid = {"victim": victim.info["pid"], "init": 1, "service": svc.pid,
           "parent": os.getppid()}[whose]
    before = victim.digest()
    arena = Arena()
    try:
        with RawPeer(svc.path) as peer:
            _try_handshake(peer, pid, arena.param, arena.retn, arena.param_size)
            peer.expect_error(ErrorCode.PID_MISMATCH)  # (a)
        assert arena.holds_pattern() and arena.canaries_intact()  # (c) nothing written
    finally:
        arena.close()
    assert victim.digest() == before  # (c)
    svc.assert_serving()  # (b)


@pytest.mark.parametrize("pid", [0, -1 & 0xFFFF_FFFF_FFFF_FFFF, 1 << 31, 1 << 40])
def test_claimed_pid_out_of_range_is_protocol_error(svc, pid):
    arena = Arena()
    try:
        with RawPeer(svc.path) as peer:
            _try_handshake(peer, pid, arena.param, arena.retn, arena.param_size)
            peer.expect_error(ErrorCode.PROTOCOL)
        assert arena.holds_pattern() and arena.canaries_intact()
    finally:
        arena.close()
    svc.assert_serving()


# -- case 2: a victim holding 0x1337D00D at known addresses (T1, T2, T10) -------------------
def test_victim_addresses_under_own_pid_are_not_mapped_here(svc, victim):
    """The service looks at the connecting process's memory only: the
    victim's addresses are nothing in the attacker's address space."""
    info = victim.info
    assert not mapped_in_self(info["param"] - PAGE, 3 * PAGE + 2 * info["size"])
    before = victim.digest()
    with RawPeer(svc.path) as peer:
        _try_handshake(peer, os.getpid(), info["param"], info["retn"], info["size"])
        peer.expect_error(ErrorCode.BAD_BLOCK)
    assert victim.digest() == before
    svc.assert_serving()


def test_victim_addresses_under_victim_pid_is_pid_mismatch(svc, victim):
    info = victim.info
    before = victim.digest()
    with RawPeer(svc.path) as peer:
        _try_handshake(peer, info["pid"], info["param"], info["retn"], info["size"])
        peer.expect_error(ErrorCode.PID_MISMATCH)
    assert victim.digest() == before
    svc.assert_serving()


def test_victim_addresses_mirrored_in_attacker_touch_only_attacker(svc, victim):
    """The attacker maps its own pattern blocks at the victim's very addresses:
    the handshake and an operation succeed, and every byte lands in the
    attacker's memory; the victim's blocks still hold the pattern."""
    info = victim.info
    before = victim.digest()
    arena = Arena(address=info["param"] - PAGE)
    try:
        assert (arena.param, arena.retn) == (info["param"], info["retn"])
        with RawPeer(svc.path) as peer:
            peer.handshake(arena)
            status, _, payload = peer.execute(arena, 1, 0x0003,
                                              encode(b.Echo(data=b"mine, not yours")))
            assert status == Status.OK
            assert msgspec.msgpack.decode(payload) == b"mine, not yours"
        assert arena.canaries_intact()
    finally:
        arena.close()
    assert victim.digest() == before
    victim.send("hash")
    assert victim.read()["pattern"] is True
    svc.assert_serving()


# -- case 3: the connecting process execs or exits; a forked child keeps the socket -------
def _run_forking_client(svc, spawn_peer, mode: str, *extra: str) -> dict[str, list[dict]]:
    address = free_address(3 * PAGE + 2 * DEFAULT_BLOCK)
    peer = spawn_peer("forking_client.py", str(svc.path), mode, hex(address), *extra)
    said: dict[str, list[dict]] = {}
    while True:
        msg = peer.read(15.0)
        said.setdefault(msg["who"], []).append(msg)
        if msg["who"] == "reaper":
            break
    assert peer.wait() == 0
    assert said["reaper"][0]["connector_status"] == 0
    return said


def _no_success(events: list[list]) -> None:
    assert ["Done", "OK"] not in events, events
    assert ["Started", "STARTED"] not in events, events


@pytest.mark.parametrize("mode", ["exec", "exec_op"])
def test_exec_after_handshake_never_writes_the_new_image(svc, spawn_peer, slow_tree, mode):
    """T6: after execve the /proc/<pid>/mem fd of the handshake reaches
    nothing; the new image, holding the pattern at the very same addresses,
    is not written, and the child holding the socket gets ERROR
    MEMORY_ACCESS, never a result."""
    said = _run_forking_client(svc, spawn_peer, mode, str(slow_tree))
    connector, (image, image_after) = said["connector"][0], said["image"]
    holder = said["holder"][0]
    assert image["pid"] == connector["pid"]  # same pid, new image
    assert holder["sent"] is True  # EXECUTE / CANCEL reached the live session
    assert image["pattern"] is True
    events = holder["events"]
    _no_success(events)
    assert ["Error", "MEMORY_ACCESS"] in events, events  # (a) typed
    assert events[-1] == ["ConnectionClosed"], events
    assert image_after["hash_after"] == image["hash"]  # (c) the new image untouched
    assert image_after["pattern"] is True and image_after["canaries"] is True
    svc.assert_serving()  # (b)


def test_exec_during_handshake_never_touches_the_new_image(svc, spawn_peer):
    """T6 inside the handshake: CLIENT_PID and the blocks come from the old
    image, IPC_TEST arrives after the exec. The pattern test reads through
    the handshake's fd, which reaches nothing now: a typed failure, and the
    new image's pattern (at the same addresses) is neither read as a pass
    nor zeroed."""
    said = _run_forking_client(svc, spawn_peer, "exec_handshake")
    (image, image_after), holder = said["image"], said["holder"][0]
    events = holder["events"]
    assert ["TestDone", "NONE"] not in events, events
    # MEMORY_ACCESS at H6. (BAD_BLOCK, equally safe, if H5's maps check had
    # run after the exec began: the connector waits until the service has read
    # ADDR_RETN before it execs, which makes that a microsecond window.)
    assert events[0] in (["TestDone", "MEMORY_ACCESS"], ["Error", "BAD_BLOCK"]), events
    if events[0][1] == "MEMORY_ACCESS":
        assert holder["sent"] is True
    assert events[-1] == ["ConnectionClosed"], events
    assert image_after["hash_after"] == image["hash"] and image_after["pattern"] is True
    svc.assert_serving()


def test_connector_exit_ends_session_held_by_child(svc, spawn_peer):
    """T5: the session ends when the connecting process exits, though its
    forked child still holds the socket; nothing the child sends runs."""
    said = _run_forking_client(svc, spawn_peer, "exit")
    holder = said["holder"][0]
    assert holder["events"] in ([["ConnectionClosed"]],
                                [["Error", "PEER_EXITED"], ["ConnectionClosed"]]), holder
    _no_success(holder["after"])
    svc.assert_serving()


# -- exec of a set-uid program between connect() and CLIENT_PID (T6, H3) --------------------
@pytest.fixture(scope="module")
def open_guard() -> Iterator[tuple[Svc, Path]]:
    """A Guard whose socket uid 65534 can reach (0755 directory, socket
    0666), and a set-uid-root copy of sleep(1) beside it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: drops to uid 65534 and execs a set-uid-root program")
    directory = Path(tempfile.mkdtemp(prefix="aether-hostile-"))
    try:
        if os.statvfs(directory).f_flag & os.ST_NOSUID:
            pytest.skip(f"{directory.parent} is mounted nosuid")
        os.chmod(directory, 0o755)
        setuid_sleep = directory / "setuid-sleep"
        shutil.copy("/usr/bin/sleep", setuid_sleep)
        os.chmod(setuid_sleep, 0o4755)
        svc = Svc("guard", directory / "guard.ctl", args=("--mode", "0666"))
        svc.start()
        try:
            yield svc, setuid_sleep
        finally:
            svc.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.root
def test_setuid_exec_before_client_pid_is_refused(open_guard, spawn_peer):
    """uid 65534 connects, forks a holder, and execs a set-uid-root program:
    same pid, so CLIENT_PID matches SO_PEERCRED and the pidfd, but the image
    now runs as root. The service must not bind the session's memory fd to
    it: ERROR PID_MISMATCH, and it keeps no /proc/<pid>/mem of it open."""
    svc, setuid_sleep = open_guard
    peer = spawn_peer("setid_exec_client.py", str(svc.path), str(setuid_sleep))
    said: dict[str, list[dict]] = {}
    while "reaper" not in said:
        msg = peer.read(15.0)
        said.setdefault(msg["who"], []).append(msg)
    holder = said["holder"][0]
    assert said["connector"][0]["euid"] == 65534
    assert holder["events"] == [["Error", "PID_MISMATCH"], ["ConnectionClosed"]], holder
    target = f"/proc/{holder['target']}/mem"
    assert all(os.readlink(f"/proc/{svc.pid}/fd/{fd}") != target
               for fd in os.listdir(f"/proc/{svc.pid}/fd"))
    assert peer.wait() == 0
    svc.wait_footprint()
    svc.assert_serving()
