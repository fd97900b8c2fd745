"""The global atom table across real processes (win32-ipc-semantics.md 1.35, 1.36).

Workers are ``python _atom_worker.py`` subprocesses. Every wait has a
timeout; synchronisation is by lines on pipes, never by sleeping; only
processes started here are killed, by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.errors import NotFoundError
from aether.primitives.atoms import GlobalAtomTable, LocalAtomTable
from aether.testing.child import read_line as _read_line, send_line

WORKER = str(Path(__file__).with_name("_atom_worker.py"))
TIMEOUT = 120.0


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:  # only what this test started, by pid
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def start(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def read_line(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    return _read_line(proc, timeout)


def send(proc: subprocess.Popen[str], text: str) -> None:
    send_line(proc, text)


def run_stress(procs: list[subprocess.Popen[str]], workers: int, iterations: int) -> list[int]:
    """Start workers, release them together, return their recovery counts."""
    started = [start(procs, "stress", str(i), str(iterations)) for i in range(workers)]
    for proc in started:
        assert read_line(proc) == "ready"
    for proc in started:
        send(proc, "go")
    return [int(read_line(proc).split()[1]) for proc in started]


def check_stress_result(table: GlobalAtomTable, workers: int, iterations: int) -> None:
    table.verify()  # no duplicated names, chains and counts consistent
    contents = {info.name: info.refcount for info in table}
    expected = {"Shared": 1 + workers * (iterations - iterations // 2)}
    expected.update({f"Keep-{i}": -(-iterations // 1000) for i in range(workers)})
    assert contents == expected
    assert len(table) == len(expected)


@pytest.mark.slow
def test_eight_processes_exact_refcounts(runtime_dir: Path, procs: list) -> None:
    # ref 1.17, 1.18 under concurrency: 8 processes x 10,000 iterations of
    # adds and deletes of the same atom ("Shared") and of their own atoms
    # (created and removed every iteration). Nothing lost, nothing duplicated.
    with GlobalAtomTable() as table:
        table.add("Shared")
        run_stress(procs, workers=8, iterations=10_000)
        for proc in procs:
            assert proc.wait(timeout=TIMEOUT) == 0
        check_stress_result(table, workers=8, iterations=10_000)


@pytest.mark.slow
def test_killed_lock_holder_is_recovered(runtime_dir: Path, procs: list) -> None:
    # A process SIGKILLed in the middle of an update, holding the lock: the
    # kernel drops its flock, the next process rolls the half-done add back,
    # and the others carry on with exact results.
    with GlobalAtomTable() as table:
        table.add("Shared")
        holder = start(procs, "hold", "victim")
        assert read_line(holder) == "mid-update"  # lock held, slot half written
        workers = [start(procs, "stress", str(i), "300") for i in range(3)]
        for proc in workers:
            assert read_line(proc) == "ready"
        for proc in workers:
            send(proc, "go")  # they now block on the lock the holder keeps
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=TIMEOUT) == -signal.SIGKILL
        recoveries = [int(read_line(proc).split()[1]) for proc in workers]
        for proc in workers:
            assert proc.wait(timeout=TIMEOUT) == 0
        assert sum(recoveries) == 1  # exactly one process found and undid it
        with pytest.raises(NotFoundError):
            table.find("victim")
        check_stress_result(table, workers=3, iterations=300)


def test_atoms_outlive_the_process_that_added_them(runtime_dir: Path, procs: list) -> None:
    # ref 1.35: global atoms stay until their count reaches 0.
    adder = start(procs, "add", "Persistent", "persistent", "#77")
    atoms = [int(a) for a in read_line(adder).split()]
    assert adder.wait(timeout=TIMEOUT) == 0
    assert atoms[0] == atoms[1] and atoms[2] == 77
    with GlobalAtomTable() as table:
        assert table.find("PERSISTENT") == atoms[0]
        assert table.refcount(atoms[0]) == 2
        assert table.get_name(atoms[0]) == "Persistent"


def test_local_atoms_do_not_cross_processes(runtime_dir: Path, procs: list) -> None:
    # ref 1.34: a local table is the process's own and dies with it.
    child = start(procs, "local", "child-local")
    assert int(read_line(child)) == 0xC000
    assert child.wait(timeout=TIMEOUT) == 0
    with pytest.raises(NotFoundError):
        LocalAtomTable().find("child-local")
    with GlobalAtomTable() as table, pytest.raises(NotFoundError):
        table.find("child-local")


def test_runtime_dirs_are_separate_tables(tmp_path: Path, procs: list, monkeypatch) -> None:
    # ref 1.36: one table per session; here one per user runtime directory.
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(mode=0o700)
    second.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(first))
    adder = start(procs, "add", "only-in-a")
    read_line(adder)
    assert adder.wait(timeout=TIMEOUT) == 0
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(second))
    with GlobalAtomTable() as table, pytest.raises(NotFoundError):
        table.find("only-in-a")


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_other_user_cannot_reach_the_table(runtime_dir: Path, procs: list) -> None:
    # The per-user boundary: the table lives in a 0700 directory and is 0600,
    # so a process of another uid can neither read nor corrupt it.
    with GlobalAtomTable() as table:
        table.add("private")
        path = table.path
    code = (
        "import sys\n"
        "from aether.osapi import drop_privileges\n"
        "drop_privileges(65534)\n"
        f"try:\n    open({str(path)!r}, 'r+b')\n"
        "except PermissionError:\n    print('denied')\n"
        "else:\n    print('opened')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    procs.append(proc)  # type: ignore[arg-type]
    assert read_line(proc) == "denied"
    assert proc.wait(timeout=TIMEOUT) == 0
