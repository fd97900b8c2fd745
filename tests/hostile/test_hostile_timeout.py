"""Clients that connect and then say nothing (threat T23; docs/protocol.md
§3: "the whole handshake must finish within the service's handshake timeout
after HELLO: ERROR(HANDSHAKE_TIMEOUT)").

A dedicated service (hostile_targets.py) runs with a 0.5 s handshake
timeout. The lower bound on the wait is checked (the service cannot answer
before its deadline); the upper bound is generous.
"""

from __future__ import annotations

import os
import select
import time

import pytest
from hostile_support import SHORT_HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from rawpeer import Arena, RawPeer

import aether
from aether.wire import ErrorCode, messages as m


def _silent_until_timeout(peer: RawPeer, started: float) -> None:
    peer.expect_error(ErrorCode.HANDSHAKE_TIMEOUT, timeout=HANDSHAKE_TIMEOUT + 3.0)
    waited = time.monotonic() - started
    assert waited >= HANDSHAKE_TIMEOUT - 0.05, f"timed out after only {waited:.3f} s"


STOPS = {
    "says_nothing": [],  # not even reading HELLO
    "after_client_pid": ["client_pid"],
    "after_addr_retn": ["client_pid", "blocks"],
}


@pytest.mark.parametrize("case", sorted(STOPS))
def test_silent_client_gets_handshake_timeout(short, case):
    arena = Arena()
    try:
        started = time.monotonic()
        with RawPeer(short.path) as peer:
            for step in STOPS[case]:
                if step == "client_pid":
                    peer.send(m.ClientPid(os.getpid()))
                else:
                    peer.send(m.AddrParam(arena.param, arena.param_size))
                    peer.send(m.AddrRetn(arena.retn, arena.retn_size))
            _silent_until_timeout(peer, started)
        assert arena.holds_pattern() and arena.canaries_intact()
    finally:
        arena.close()
    short.assert_serving()


def test_client_that_never_sends_test_verified(short):
    """H7 done, H8 never comes: the timeout still applies."""
    arena = Arena()
    try:
        started = time.monotonic()
        with RawPeer(short.path) as peer:
            peer.hello()
            for event in (m.ClientPid(os.getpid()), m.AddrParam(arena.param, arena.param_size),
                          m.AddrRetn(arena.retn, arena.retn_size), m.IpcTest()):
                peer.send(event)
            assert peer.expect(m.TestDone).error == 0
            _silent_until_timeout(peer, started)
        assert arena.holds_zeros() and arena.canaries_intact()  # H6 only, own blocks
    finally:
        arena.close()
    short.assert_serving()


def test_silent_clients_do_not_lock_out_others(short):
    """Eight silent connections hold half-open slots; a well-behaved client
    is still served at once, and each silent one gets its timeout."""
    started = time.monotonic()
    silent = [RawPeer(short.path) for _ in range(8)]
    try:
        for peer in silent:
            peer.hello()
        short.assert_serving()
        # ...while all eight were still half-open (no ERROR had arrived yet)
        assert not select.select(silent, [], [], 0)[0], "served only after the timeouts"
        for peer in silent:
            _silent_until_timeout(peer, started)
    finally:
        for peer in silent:
            peer.close()
    short.assert_serving()


def test_half_open_flood_gets_limits_exceeded_then_recovers(svc):
    """T23/T24: one uid fills its half-open slots with silent connections
    (the default 5 s handshake timeout, so none expires meanwhile); its next
    connection is refused at once with ERROR LIMITS_EXCEEDED and no HELLO.
    Once the silent ones hang up, the slots are free and it is served again."""
    limit = aether.Limits().max_half_open_per_uid
    silent = [RawPeer(svc.path) for _ in range(limit)]
    try:
        for peer in silent:
            peer.hello()  # HELLO sent: the session exists and holds its slot
        with RawPeer(svc.path) as extra:
            extra.expect_error(ErrorCode.LIMITS_EXCEEDED)
            assert not any(isinstance(e, m.Hello) for e in extra.events)
    finally:
        for peer in silent:
            peer.close()
    svc.wait_footprint()  # every half-open session ended with its hang-up
    svc.assert_serving()
