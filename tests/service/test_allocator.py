"""The service's C allocator: one arena for every thread, and its free pages
given back to the kernel every ``Limits.heap_trim_interval`` seconds. Found
by ``aether bench load --soak``: free memory kept by the arenas of the
session and worker threads grew the RSS while the memory in use stayed flat."""

from __future__ import annotations

import itertools
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

    def run(target: str, **extra_env: str) -> ServiceProcess:
        env = {"PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **extra_env}
        svc = ServiceProcess(target, runtime_dir / "trim.ctl", env=env).start()
        started.append(svc)
        return svc

    yield run
    for svc in started:
        svc.kill()


def _fragment(svc: ServiceProcess) -> tuple[int, int]:
    """The service's private RSS before the operation, and the bytes it freed."""
    import alloc_svc  # the schema, from the service's own module (on sys.path here)

    before = _anon_kib(svc.pid)
    with Client(svc.socket_path, schema=alloc_svc.schema, transport="socket") as client:
        freed = client.call(alloc_svc.Fragment(), timeout=30)
    return before, freed


def test_holes_in_a_thread_arena_go_back_to_the_kernel(start, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    svc = start("alloc_svc:service")
    before, freed = _fragment(svc)
    assert freed > 20 * MIB * 1024
    # 32 blocks of 16 KiB stay in use; the ~24 MiB between them go back
    wait_until(lambda: _anon_kib(svc.pid) < before + 8 * MIB, 10,
               "the service to trim its heap", watch_pid=svc.pid)


def test_without_the_trim_the_holes_stay_resident(start, monkeypatch):
    # the control: what the test above measures is the trim, not free()
    monkeypatch.syspath_prepend(str(HERE))
    svc = start("alloc_svc:untrimmed")
    before, _ = _fragment(svc)
    assert _anon_kib(svc.pid) > before + 16 * MIB


# glibc's heap of a thread arena: 64 MiB reserved at a 64 MiB boundary, the
# part in use read-write, the rest PROT_NONE right after it.
ARENA_HEAP = 64 * 1024 * 1024


def _thread_arenas(pid: int) -> int:
    maps = []
    with open(f"/proc/{pid}/maps", encoding="ascii") as fh:
        for line in fh:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append((start, end, fields[1], len(fields) > 5))
    return sum(1 for (start, end, perms, named), (nstart, nend, nperms, nnamed)
               in itertools.pairwise(maps)
               if start % ARENA_HEAP == 0 and perms == "rw-p" and not named
               and nstart == end and nperms == "---p" and not nnamed
               and nend - start == ARENA_HEAP)


def test_worker_threads_allocate_from_the_one_arena(start, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    svc = start("alloc_svc:service")
    _fragment(svc)  # a worker thread's 1,600 mallocs
    _fragment(svc)
    assert _thread_arenas(svc.pid) == 0


def test_an_operator_setting_wins_and_then_threads_get_arenas(start, monkeypatch):
    # the control: what the test above counts are real thread arenas
    monkeypatch.syspath_prepend(str(HERE))
    svc = start("alloc_svc:service", GLIBC_TUNABLES="glibc.malloc.arena_max=8")
    _fragment(svc)
    assert _thread_arenas(svc.pid) >= 1
