"""The service gives the C allocator's free pages back to the kernel every
``Limits.heap_trim_interval`` seconds (found by ``aether bench load --soak``:
the free holes in the session and worker threads' arenas kept the RSS
growing while the memory in use stayed flat)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.client import Client
from aether.testing import ServiceProcess, wait_until

HERE = Path(__file__).parent
MIB = 1024


def _anon_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:"))


@pytest.fixture
def start(runtime_dir: Path) -> Iterator:
    started: list[ServiceProcess] = []

    def run(target: str) -> ServiceProcess:
        env = {"PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        svc = ServiceProcess(target, runtime_dir / "trim.ctl", env=env).start()
        started.append(svc)
        return svc

    yield run
    for svc in started:
        svc.kill()


def _fragment(svc: ServiceProcess) -> tuple[int, int]:
    """The service's private RSS before the operation, and the bytes it freed."""
    import trim_svc  # the schema, from the service's own module (on sys.path here)

    before = _anon_kib(svc.pid)
    with Client(svc.socket_path, schema=trim_svc.schema, transport="socket") as client:
        freed = client.call(trim_svc.Fragment(), timeout=30)
    return before, freed


def test_holes_in_a_thread_arena_go_back_to_the_kernel(start, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    svc = start("trim_svc:service")
    before, freed = _fragment(svc)
    assert freed > 20 * MIB * 1024
    # 8 blocks of 64 KiB stay in use; the ~24 MiB between them go back
    wait_until(lambda: _anon_kib(svc.pid) < before + 8 * MIB, 10,
               "the service to trim its heap", watch_pid=svc.pid)


def test_without_the_trim_the_holes_stay_resident(start, monkeypatch):
    # the control: what the test above measures is the trim, not free()
    monkeypatch.syspath_prepend(str(HERE))
    svc = start("trim_svc:untrimmed")
    before, _ = _fragment(svc)
    assert _anon_kib(svc.pid) > before + 16 * MIB
