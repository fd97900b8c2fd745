"""Adaptive spinning: a waiter whose replies come later than its spin time
stops spinning (it would only take the CPU its peer needs), and starts again
once replies are quick again."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import aether_testsvc
import pytest
from aether_testsvc import Nap
from e2e_support import start_service
from hypothesis import given, strategies as st

import aether
from aether import osapi
from aether.testing.waiting import wait_until
from aether.transport import spinning
from aether.transport.spinning import CAP_IN_SPINS, NEWEST_WEIGHT, SPIN_IF_WITHIN, AdaptiveSpin

SPIN = 0.0003
# Quick waits needed to come back from the worst history (every wait capped).
QUICK_WAITS_TO_RECOVER = math.ceil(math.log(SPIN_IF_WITHIN / CAP_IN_SPINS)
                                   / math.log(1 - NEWEST_WEIGHT))


def test_a_new_waiter_spins_and_slow_replies_stop_it() -> None:
    spin = AdaptiveSpin()
    assert spin.worth(SPIN)
    waits = 0
    while spin.worth(SPIN):
        spin.waited(0.010, SPIN)  # 10 ms: far longer than the spin
        waits += 1
    assert waits <= 3, "kept spinning through replies 30 times slower than the spin"


@given(st.lists(st.floats(min_value=0, max_value=10), max_size=100))
def test_quick_replies_bring_spinning_back_whatever_came_before(history: list[float]) -> None:
    spin = AdaptiveSpin()
    for seconds in history:
        spin.waited(seconds, SPIN)
        assert 0 <= spin.expected <= CAP_IN_SPINS * SPIN
    for _ in range(QUICK_WAITS_TO_RECOVER):
        spin.waited(0.0, SPIN)
    assert spin.worth(SPIN)


@given(st.lists(st.floats(min_value=0, max_value=10), max_size=60))
def test_a_stored_wait_caught_up_later_counts_as_if_recorded_at_once(
        history: list[float]) -> None:
    """The mapping client's short path stores a wait (``unaveraged``) and has
    it averaged in before its next decision (``catch_up``): each decision
    sees the same average as with ``waited`` called at once."""
    direct, stored = AdaptiveSpin(), AdaptiveSpin()
    for seconds in history:
        stored.catch_up(SPIN)
        assert stored.expected == direct.expected
        assert stored.worth(SPIN) == direct.worth(SPIN)
        direct.waited(seconds, SPIN)
        stored.unaveraged = seconds
    stored.catch_up(SPIN)
    assert stored.expected == direct.expected
    assert stored.unaveraged is None


class _Recording(AdaptiveSpin):
    """An AdaptiveSpin that keeps every wait averaged in."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[float] = []

    def waited(self, seconds: float, spin: float) -> None:
        self.samples.append(seconds)
        super().waited(seconds, spin)


def test_every_call_of_a_mapping_client_averages_in_its_wait_once(runtime_dir: Path) -> None:
    """Whether a reply is found while spinning (the wait is stored and
    averaged in a call later) or after a sleep (averaged in at once), each
    call's wait reaches the average exactly once: none is dropped by the
    next call's, none counted twice."""
    svc = start_service("aether_testsvc:service", runtime_dir / "avg.ctl")
    try:
        with aether.Client(svc.socket_path, transport="mapping", spin=SPIN,
                           schema=aether_testsvc) as client:
            assert client._mapped is not None
            waiter = client._mapped.spinning = _Recording()
            calls = 40
            for _ in range(calls):
                assert client.echo(b"q") == b"q"
            waiter.catch_up(SPIN)
            assert len(waiter.samples) == calls
            assert all(seconds > 0 for seconds in waiter.samples)
    finally:
        svc.kill()


@pytest.mark.parametrize("transport", ["mapping", "memory", "socket"])
def test_a_client_stops_spinning_on_a_slow_service(runtime_dir: Path, transport: str) -> None:
    svc = start_service("aether_testsvc:service", runtime_dir / f"{transport}.ctl")
    try:
        with aether.Client(svc.socket_path, transport=transport, spin=SPIN,
                           schema=aether_testsvc) as client:
            waiter = client._mapped.spinning if transport == "mapping" \
                else client.channel._spinning
            for _ in range(4):
                client.call(Nap(delay=0.02))  # 60 times the spin
            assert not waiter.worth(SPIN), "still spinning after slow replies"
            assert client.echo(b"after") == b"after"
    finally:
        svc.kill()


def _fresh_cpu_to_spare() -> bool:
    spinning._cpu_checked_at = float("-inf")  # skip the cached reading
    return spinning.cpu_to_spare()


def test_the_machine_count_of_runnable_tasks_includes_the_caller() -> None:
    runnable = osapi.runnable_tasks()
    assert runnable is not None and runnable >= 1


def test_waiters_stop_spinning_while_the_cpus_are_all_busy() -> None:
    """More busy processes than CPUs: a spinner would only take a CPU from
    its peer, so should_spin says no even with a perfect history."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(osapi.online_cpus() + 1)]
    try:
        waiter = AdaptiveSpin()
        assert waiter.worth(SPIN)
        wait_until(lambda: not _fresh_cpu_to_spare(), 20,
                   "the runnable tasks to outnumber the CPUs", watch_pid=busy[0].pid)
        assert not waiter.should_spin(SPIN)
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait(10)
    spinning._cpu_checked_at = float("-inf")
