"""The service keeps its threads on one CPU while it serves two sessions or
more, frees long handlers' threads, moves when the CPU is crowded and leaves
placement alone when someone else set it (service/placement.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import aether_testsvc as ts  # tests/e2e, on the path (tests/conftest.py)
import pytest
from e2e_support import start_service
from hypothesis import given, strategies as st

import aether
from aether import osapi
from aether.client import Client
from aether.service.placement import CROWDED, MARGIN, choose_cpu
from aether.testing import ServiceProcess
from aether.testing.inprocess import serving_in_thread
from aether.testing.waiting import wait_until

ALLOWED = frozenset(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs to choose from")


# -- the decision ----------------------------------------------------------------


def test_stays_while_others_leave_it_half_its_cpu() -> None:
    assert choose_cpu(0, {0: 1.0, 1: 0.0}, own=0.6) is None  # others took 0.4


def test_moves_to_the_idlest_cpu_when_others_crowd_it() -> None:
    assert choose_cpu(0, {0: 0.95, 1: 0.6, 2: 0.1, 3: 0.3}, own=0.05) == 2


def test_stays_when_no_cpu_is_clearly_idler() -> None:
    assert choose_cpu(0, {0: 1.0, 1: 0.9}, own=0.1) is None  # others 0.9, best 0.9


def test_its_own_load_never_makes_it_move() -> None:
    assert choose_cpu(1, {0: 0.0, 1: 1.0}, own=1.0) is None


def test_one_cpu_has_nowhere_to_go() -> None:
    assert choose_cpu(0, {0: 1.0}, own=0.0) is None


@given(st.dictionaries(st.integers(0, 63), st.floats(0.0, 1.0), min_size=1, max_size=16),
       st.floats(0.0, 1.0), st.data())
def test_a_move_is_always_to_a_clearly_idler_cpu(busy: dict[int, float], own: float,
                                                  data: st.DataObject) -> None:
    cpu = data.draw(st.sampled_from(sorted(busy)))
    target = choose_cpu(cpu, busy, own)
    if target is None:
        return
    others_here = busy[cpu] - own
    assert target != cpu and target in busy
    assert others_here > CROWDED
    assert busy[target] <= others_here - MARGIN
    assert busy[target] == min(v for c, v in busy.items() if c != cpu)


# -- a real service ----------------------------------------------------------------


def _thread_cpus(pid: int) -> dict[int, frozenset[int]]:
    cpus = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            cpus[int(tid)] = frozenset(os.sched_getaffinity(int(tid)))
        except ProcessLookupError:
            pass
    return cpus


def _echoing(service: ServiceProcess, transport: str = "socket") -> Client:
    """A client whose session is established (its thread runs)."""
    client = Client(str(service.socket_path), transport=transport)
    assert client.call(client.registry.by_name("aether.echo").params(data=b"x")) == b"x"
    return client


@needs_two_cpus
def test_every_session_thread_shares_one_cpu(testsvc: ServiceProcess) -> None:
    clients = [Client(str(testsvc.socket_path), transport=t)
               for t in ("socket", "memory", "mapping", "socket")]
    try:
        for c in clients:
            assert c.call(c.registry.by_name("aether.echo").params(data=b"x")) == b"x"
        placed = _thread_cpus(testsvc.pid)
        assert len(placed) >= 1 + len(clients)  # the listener and a thread per session
        masks = set(placed.values())
        assert len(masks) == 1, placed
        (mask,) = masks
        assert len(mask) == 1 and mask <= ALLOWED
    finally:
        for c in clients:
            c.close()


@needs_two_cpus
def test_a_lone_session_leaves_placement_to_the_kernel_and_two_gather(
        testsvc: ServiceProcess) -> None:
    """One session spins for its client's calls: the kernel must be free to
    put the client elsewhere. From the second session on, one CPU."""
    first = _echoing(testsvc, "mapping")
    try:
        assert set(_thread_cpus(testsvc.pid).values()) == {ALLOWED}
        second = _echoing(testsvc)
        (mask,) = set(_thread_cpus(testsvc.pid).values())
        assert len(mask) == 1
        second.close()
        wait_until(lambda: set(_thread_cpus(testsvc.pid).values()) == {ALLOWED}, 10,
                   "every CPU again with one session", watch_pid=testsvc.pid)
        assert first.call(first.registry.by_name("aether.echo").params(data=b"y")) == b"y"
    finally:
        first.close()


@needs_two_cpus
def test_a_long_operation_s_thread_may_use_every_cpu(testsvc: ServiceProcess) -> None:
    client = Client(str(testsvc.socket_path), transport="socket", schema=ts)
    second = _echoing(testsvc)  # two sessions: the threads go to one CPU
    try:
        client.call(ts.Nap(delay=0.0))  # the session's thread exists from here on
        before = set(_thread_cpus(testsvc.pid))
        op = client.start(ts.Slow(steps=1000, delay=0.01))

        def worker_freed() -> bool:
            placed = _thread_cpus(testsvc.pid)
            return any(placed[t] == ALLOWED for t in set(placed) - before)

        wait_until(worker_freed, 10, "the handler's thread on every CPU",
                   watch_pid=testsvc.pid)
        placed = _thread_cpus(testsvc.pid)
        workers = {t for t in set(placed) - before if placed[t] == ALLOWED}
        others = {placed[t] for t in placed if t not in workers}
        assert len(others) == 1 and len(next(iter(others))) == 1, placed
        op.cancel()
    finally:
        client.close()
        second.close()


def test_all_cpus_leaves_placement_to_the_kernel(runtime_dir: Path) -> None:
    svc = start_service("aether_testsvc:service", runtime_dir / "all.ctl", "--all-cpus")
    try:
        clients = [_echoing(svc), _echoing(svc)]
        try:
            assert set(_thread_cpus(svc.pid).values()) == {ALLOWED}
        finally:
            for c in clients:
                c.close()
    finally:
        svc.kill()


def _hog(cpu: int) -> subprocess.Popen[bytes]:
    """A process that keeps ``cpu`` busy until killed."""
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


@needs_two_cpus
def test_a_crowded_cpu_is_left_for_an_idler_one(testsvc: ServiceProcess) -> None:
    held = [_echoing(testsvc), _echoing(testsvc)]
    (start_mask,) = set(_thread_cpus(testsvc.pid).values())
    (cpu,) = start_mask
    hog = _hog(cpu)
    before, started = osapi.cpu_busy_ticks(), time.monotonic()
    try:
        def moved() -> bool:
            return set(_thread_cpus(testsvc.pid).values()) != {start_mask}

        try:  # looked at every 2 s: two looks, and a margin for a noisy machine
            wait_until(moved, 15, "the service to leave its crowded CPU", watch_pid=testsvc.pid)
        except AssertionError:
            # Staying is right when no CPU was clearly idler (another test run
            # sharing the machine): say so rather than fail for it.
            after, elapsed = osapi.cpu_busy_ticks(), time.monotonic() - started
            assert before is not None and after is not None
            hz = osapi.clock_ticks_per_second()
            others = [(after[c] - before[c]) / (hz * elapsed) for c in ALLOWED if c != cpu]
            if min(others) > 1.0 - MARGIN - 0.05:
                pytest.skip(f"no idler CPU while the hog ran (busy {min(others):.0%})")
            raise
        masks = set(_thread_cpus(testsvc.pid).values())
        assert len(masks) == 1
        (mask,) = masks
        assert len(mask) == 1 and cpu not in mask
        client = Client(str(testsvc.socket_path), transport="socket")
        try:  # and it still serves
            assert client.call(client.registry.by_name("aether.echo").params(data=b"k")) == b"k"
        finally:
            client.close()
    finally:
        hog.kill()
        hog.wait()
        for c in held:
            c.close()


def test_a_service_in_another_thread_leaves_the_process_where_it_is(tmp_path: Path) -> None:
    """Embedded (a GUI's own service, a test): the process is not the service's."""
    before = os.sched_getaffinity(0)
    svc = aether.Service("embedded")
    with serving_in_thread(svc, tmp_path / "e.ctl"):
        assert not svc.placement.active
        assert os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(0) == before
