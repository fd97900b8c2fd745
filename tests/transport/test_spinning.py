"""Adaptive spinning: a waiter whose spins keep finding nothing stops
spinning for a while (it would only take the CPU its peer needs), and one
whose spins succeed keeps spinning."""

from __future__ import annotations

from pathlib import Path

import aether_testsvc
import pytest
from aether_testsvc import Nap
from e2e_support import start_service
from hypothesis import given, strategies as st

import aether
from aether.transport.spinning import MISSES_BEFORE_PAUSE, PAUSE_WAITS, AdaptiveSpin


def test_misses_in_a_row_pause_spinning_for_a_while() -> None:
    spin = AdaptiveSpin()
    for _ in range(MISSES_BEFORE_PAUSE):
        assert spin.allowed()
        spin.miss()
    assert [spin.allowed() for _ in range(PAUSE_WAITS)] == [False] * PAUSE_WAITS
    assert spin.allowed()


@given(st.lists(st.booleans(), max_size=200))
def test_a_hit_forgives_earlier_misses(outcomes: list[bool]) -> None:
    spin = AdaptiveSpin()
    misses_in_a_row = 0
    for hit in outcomes:
        assert spin.allowed(), "paused although fewer misses in a row than the limit"
        if hit:
            spin.hit()
            misses_in_a_row = 0
        else:
            spin.miss()
            misses_in_a_row += 1
            if misses_in_a_row == MISSES_BEFORE_PAUSE:
                return  # the pause starts here; the first test covers it


@pytest.mark.parametrize("transport", ["mapping", "memory", "socket"])
def test_a_client_stops_spinning_on_a_slow_service(runtime_dir: Path, transport: str) -> None:
    svc = start_service("aether_testsvc:service", runtime_dir / f"{transport}.ctl")
    try:
        with aether.Client(svc.socket_path, transport=transport, spin=0.0005,
                           schema=aether_testsvc) as client:
            waiter = client._mapped.spinning if transport == "mapping" \
                else client.channel._spinning
            for _ in range(MISSES_BEFORE_PAUSE):
                assert waiter.allowed()  # not paused yet; give the pause back
                waiter._pause = 0
                client.call(Nap(delay=0.02))  # 40 times the spin: a miss
            assert not waiter.allowed(), "still spinning after slow replies"
            assert client.echo(b"after") == b"after"
    finally:
        svc.kill()
