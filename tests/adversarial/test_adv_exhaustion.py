"""Exhaustion and fairness (threats T23-T27; DESIGN.md "Limits").

Against ``adversarial_targets:tight`` (4 sessions and 8 half-open
connections per uid, a 2 s handshake and a 0.5 s send timeout, 2 handler threads
per uid), socket 0666 so a second uid (65534) can connect:

- one uid at its session limit is refused with LIMITS_EXCEEDED while another
  uid is still served (T24);
- 1,000 silent connections at once: a real client of another uid completes
  its handshake within 1 s meanwhile, and the flooding uid itself gets in
  once its half-open connections time out (2 s; T23);
- a client that never reads while the service streams progress to it is cut
  off after the send timeout (T25);
- handlers that never return keep their thread slots (the root-side worker
  cannot be killed), so the uid that started them is refused more, and
  everyone else goes on (T26);
- descriptors attached (SCM_RIGHTS) to control messages are never kept by
  the service, and a pipe handover that carries too many or the wrong
  descriptors leaks none (T27).

After each case the service's VmRSS and descriptor count are compared with
those before: descriptors back to the baseline, RSS within a small bound.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import adversarial_targets as at
import pytest
from adv_support import NOBODY, Forked, TightSvc, footprint, tight_service
from rawpeer import Arena, RawPeer

import aether
from aether.errors import LimitsExceededError
from aether.osapi import drop_privileges, set_dumpable
from aether.osapi.fdpass import send_fds
from aether.primitives.pipes import create_pipe
from aether.schema import builtins as b, encode
from aether.testing import wait_until
from aether.wire import ErrorCode, messages as m

RSS_BOUND_KIB = 16 * 1024  # growth allowed over a whole case (allocator noise, caches)


def _tight() -> Iterator[TightSvc]:
    if os.geteuid() != 0:
        pytest.skip("needs root: a second uid connects")
    yield from tight_service()


@pytest.fixture(scope="module")
def tight_svc() -> Iterator[TightSvc]:
    yield from _tight()


@pytest.fixture
def tight_private() -> Iterator[TightSvc]:
    """A tight service of its own (stuck handler threads never end)."""
    yield from _tight()


@pytest.fixture
def tight(tight_svc: TightSvc) -> Iterator[TightSvc]:
    import hostile_conftest

    if tight_svc.alive():
        tight_svc.wait_footprint(timeout=10.0)  # idle before the baseline is taken
    before = footprint(tight_svc.pid) if tight_svc.alive() else None
    yield from hostile_conftest._service_fixture(tight_svc)
    if before is not None:
        after = footprint(tight_svc.pid)
        assert after["fds"] == before["fds"], (before, after)
        assert after["rss_kib"] - before["rss_kib"] < RSS_BOUND_KIB, (before, after)


def _other_uid_echo(path: Path):
    """Body of a uid-65534 client: time to a complete handshake and an echo."""

    def body(chan):
        drop_privileges(NOBODY)
        set_dumpable(True)
        t0 = time.monotonic()
        with aether.Client(path, schema=at.SCHEMAS, transport="memory", timeout=2.0) as c:
            handshake = time.monotonic() - t0
            assert c.echo(b"fair") == b"fair"
        return {"handshake": handshake, "total": time.monotonic() - t0}

    return body


def _run_other_uid(path: Path) -> dict:
    child = Forked(_other_uid_echo(path))
    try:
        return child.result()
    finally:
        child.close()


# -- T24: per-uid session limit ---------------------------------------------------------------
def test_uid_at_its_session_limit_is_refused_another_uid_is_served(tight):
    clients = [tight.client() for _ in range(at.LIMITS.max_sessions_per_uid)]
    try:
        with pytest.raises(aether.AetherError) as info:
            tight.client().close()
        assert "maximum of 4 sessions" in str(info.value) or "LIMITS" in str(info.value), \
            info.value
        out = _run_other_uid(tight.path)
        assert out["total"] < 1.0, out
    finally:
        for c in clients:
            c.close()
    tight.wait_footprint()
    tight.assert_serving()


# -- memory per uid on the mapping transport ----------------------------------------------------
def _mapping_client(svc: TightSvc, **kw):
    return aether.Client(svc.path, schema=at.SCHEMAS, transport="mapping", timeout=2.0, **kw)


def _other_uid_mapping_echo(path: Path):
    def body(chan):
        drop_privileges(NOBODY)
        with aether.Client(path, schema=at.SCHEMAS, transport="mapping", timeout=2.0) as c:
            return {"echo": c.echo(b"rings of my own").decode()}

    return body


def test_uid_over_its_ring_budget_is_refused_another_uid_is_served(tight):
    first, second = _mapping_client(tight), _mapping_client(tight)
    try:
        with pytest.raises(aether.HandshakeError) as info:
            _mapping_client(tight).close()
        assert info.value.reason == "limits-exceeded", info.value
        assert "budget" in str(info.value)
        # growing a session's rings (step M4) counts too: 2 MiB rings do not fit
        with pytest.raises(aether.AetherError) as grown:
            first.call(b.Echo(data=b"x" * (2 << 20)))
        assert "budget" in str(grown.value), grown.value
        child = Forked(_other_uid_mapping_echo(tight.path))
        try:
            assert child.result() == {"echo": "rings of my own"}
        finally:
            child.close()
        assert second.echo(b"still served") == b"still served"
    finally:
        first.close()
        second.close()
    # what the closed sessions held is given back: two new sessions fit again
    with _mapping_client(tight) as a, _mapping_client(tight) as c:
        assert a.echo(b"a") == b"a" and c.echo(b"c") == b"c"
    tight.wait_footprint()
    tight.assert_serving()


# -- T23: 1,000 silent connections -----------------------------------------------------------
def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")


def test_thousand_silent_connections_do_not_lock_out_a_real_client(tight):
    _raise_nofile(len(os.listdir("/proc/self/fd")) + 1200)  # room whatever is open already
    before = footprint(tight.pid)
    silent: list[socket.socket] = []
    try:
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    s.connect(str(tight.path))
                    break
                except BlockingIOError:  # backlog full for a moment
                    assert time.monotonic() < deadline
                except OSError as exc:
                    assert exc.errno == errno.EAGAIN, exc
                    assert time.monotonic() < deadline
            silent.append(s)
        during = footprint(tight.pid)
        # the service holds at most its half-open limit, never 1,000 sessions
        assert during["fds"] <= before["fds"] + 2 * at.LIMITS.max_half_open + 8, (before, during)
        # another uid completes its handshake within a second meanwhile
        out = _run_other_uid(tight.path)
        assert out["handshake"] < 1.0, out
        # the flooding uid itself: once its silent ones time out (2 s), it gets in
        wait_until(lambda: _try_echo(tight), 10.0, "a real root client to get in",
                   watch_pid=tight.pid)
    finally:
        for s in silent:
            s.close()
    tight.wait_footprint()


def _try_echo(svc: TightSvc) -> bool:
    try:
        with svc.client() as c:
            return c.echo(b"x") == b"x"
    except aether.AetherError:
        return False


# -- T25: a client that never reads ----------------------------------------------------------
def test_client_that_never_reads_is_cut_off(tight):
    arena = Arena()
    try:
        with RawPeer(tight.path) as peer:
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            peer.handshake(arena)
            # Progress is lossy by design (dropped when the queue is full, so a
            # handler never blocks on a client); DONE is not: it waits at most
            # the send timeout, then the client is cut off.
            payload = encode(at.Chatty(count=20_000))
            arena.write_params(1, 0x0E02, payload)
            peer.send(m.Execute(1, len(payload)))
            t0 = time.monotonic()
            # never read: progress messages pile up until the service gives up
            tight.assert_serving()  # others are served meanwhile
            # 20,000 progress reports take about a second on a quiet machine;
            # the bound is generous for a loaded CI box. What matters: the
            # session ends although the client never reads.
            wait_until(lambda: tight.footprint() == tight.baseline, 30.0,
                       "the non-reading client to be cut off", watch_pid=tight.pid)
            took = time.monotonic() - t0
            assert took < 30.0, took
            # what the client finds when it finally reads: a full queue of
            # progress, and no DONE (it was cut off instead)
            kinds = set()
            while True:
                event = peer.recv(1.0)
                kinds.add(type(event).__name__)
                if isinstance(event, m.ConnectionClosed):
                    break
            assert "Done" not in kinds and "Progress" in kinds, kinds
        assert arena.canaries_intact()
    finally:
        arena.close()
    tight.assert_serving()


# -- T26: handlers that never return -----------------------------------------------------------
def test_handlers_that_never_return_cost_only_their_uid(tight_private):
    tight = tight_private
    threads_before = footprint(tight.pid)["threads"]
    stuck = []
    for _ in range(at.LIMITS.max_workers_per_uid):
        c = tight.client()
        stuck.append((c, c.start(at.Hang())))
    try:
        with tight.client() as c:
            with pytest.raises(LimitsExceededError):
                c.call(at.Hang(), timeout=2.0)
            assert c.echo(b"inline ops still run") == b"inline ops still run"
        out = _run_other_uid(tight.path)  # another uid is unaffected
        assert out["total"] < 1.0, out
    finally:
        for c, _op in stuck:
            c.close()
    # the sessions are gone; the stuck handler threads cannot be killed, and
    # stay counted against their uid: bounded, never more than the limit
    wait_until(lambda: tight.status().sessions == 1, 2.0, "stuck sessions to close",
               watch_pid=tight.pid)
    bound = threads_before + at.LIMITS.max_workers_per_uid
    wait_until(lambda: footprint(tight.pid)["threads"] <= bound, 2.0,
               f"service threads to settle at <= {bound} (main + stuck workers)",
               watch_pid=tight.pid)
    with tight.client() as c:
        with pytest.raises(LimitsExceededError):
            c.call(at.Hang(), timeout=2.0)
    tight.assert_serving()
    assert "Traceback" not in tight.new_stderr()


# -- T27: descriptors games -----------------------------------------------------------------
@pytest.mark.parametrize("when", ["handshake", "session"])
def test_descriptors_attached_to_control_messages_are_not_kept(svc, when):
    r, w = create_pipe()
    arena = Arena()
    try:
        with RawPeer(svc.path) as peer:
            if when == "session":
                peer.handshake(arena)
                payload = encode(b.Echo(data=b"x"))
                arena.write_params(1, 0x0003, payload)
                data = m.Execute(1, len(payload))
            else:
                peer.hello()
                data = m.ClientPid(os.getpid())
            from aether import wire

            send_fds(peer.sock, wire.encode(data), [r.fileno(), w.fileno()] * 100)
            if when == "handshake":  # go on with H4-H6: the pids matched, it continues
                peer.send(m.AddrParam(arena.param, arena.param_size))
                peer.send(m.AddrRetn(arena.retn, arena.retn_size))
                peer.send(m.IpcTest())
            event = peer.recv()
            # processed as if the descriptors were not there (or refused as a
            # protocol error); they are never kept
            assert isinstance(event, m.TestDone | m.Done | m.Started | m.Error), event
            if isinstance(event, m.Error):
                assert event.error == ErrorCode.PROTOCOL
            ours = f"pipe:[{os.fstat(r.fileno()).st_ino}]"
            held = []
            for fd in os.listdir(f"/proc/{svc.pid}/fd"):
                try:
                    held.append(os.readlink(f"/proc/{svc.pid}/fd/{fd}"))
                except OSError:
                    continue
            assert ours not in held, f"the service kept {held.count(ours)} of our descriptors"
    finally:
        r.close()
        w.close()
        arena.close()
    svc.assert_serving()


def test_pipe_handover_with_too_many_descriptors_leaks_none():
    from aether.errors import AetherError
    from aether.primitives._pipe_handover import receive_end

    a, b_ = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = create_pipe()
    with a, b_, r, w:
        before = len(os.listdir("/proc/self/fd"))
        for fds in ([r.fileno()] * 250, [w.fileno(), r.fileno()], [a.fileno()]):
            send_fds(a, b"aether.pipe:r", fds)
            with pytest.raises(AetherError):
                receive_end(b_)
            assert len(os.listdir("/proc/self/fd")) == before, fds


def test_client_waits_for_room_in_a_full_listen_backlog(tight_private):
    """Regression: with the service's listen backlog full (a flood it has not
    accepted yet), aether.Client used to fail at once with EAGAIN; it now
    waits in connect() up to its timeout. The backlog is filled for sure by
    stopping the service (SIGSTOP) and connecting until the kernel says
    EAGAIN; the service is resumed once the client is waiting."""
    import signal
    import threading

    tight = tight_private
    _raise_nofile(len(os.listdir("/proc/self/fd")) + 1200)
    silent: list[socket.socket] = []
    result: dict[str, object] = {}
    os.kill(tight.pid, signal.SIGSTOP)
    try:
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
            try:
                s.connect(str(tight.path))
            except BlockingIOError:
                s.close()
                break
            silent.append(s)
            assert len(silent) < 1100, "the backlog never filled"

        def connect() -> None:
            try:
                with tight.client(timeout=5.0) as c:
                    result["echo"] = c.echo(b"waited")
            except BaseException as exc:
                result["error"] = exc

        worker = threading.Thread(target=connect)
        worker.start()
        worker.join(0.3)  # the old client had failed by now
        assert "error" not in result, result
    finally:
        os.kill(tight.pid, signal.SIGCONT)
    for s in silent:
        s.close()
    worker.join(10)
    # It got through connect(): served, or (the flood's half-open sessions
    # still counted against uid 0) refused by the service's own limit at
    # H2, a typed answer. Never the kernel's EAGAIN as a ConnectError.
    error = result.get("error")
    assert result.get("echo") == b"waited" or (
        isinstance(error, aether.HandshakeError) and error.reason == "limits-exceeded"), result
