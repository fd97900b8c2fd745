"""Server processes and CPU placement for the benchmark.

A placement says on which CPUs the client (this process, or a load
generator) and the server run: ``unpinned`` leaves it to the scheduler,
``same-cpu`` puts both on one CPU, ``cross-cpu`` on two different ones.
Pinning a running process means pinning every one of its threads (threads
created later inherit their creator's mask), which is what
``os.sched_setaffinity`` on each ``/proc/PID/task`` entry does.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aether import osapi
from aether.testing import python_env

PLACEMENTS = ("unpinned", "same-cpu", "cross-cpu")


@dataclass(frozen=True)
class Placement:
    name: str
    client: frozenset[int] | None
    server: frozenset[int] | None


def placement(name: str) -> Placement | str:
    """The placement named, or the reason it cannot be had on this machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if name == "unpinned":
        return Placement(name, None, None)
    if name == "same-cpu":
        return Placement(name, frozenset(cpus[:1]), frozenset(cpus[:1]))
    if name == "cross-cpu":
        if len(cpus) < 2:
            return "only one CPU is available to this process"
        return Placement(name, frozenset(cpus[:1]), frozenset(cpus[1:2]))
    raise ValueError(f"unknown placement {name!r}")


def pin_process(pid: int, cpus: frozenset[int] | set[int] | None) -> None:
    """Pin every thread of ``pid`` (``None``: every CPU this process may use)."""
    osapi.set_process_cpus(frozenset(cpus) if cpus else frozenset(_all_cpus()), pid=pid)


_ALL: set[int] | None = None


def _all_cpus() -> set[int]:
    global _ALL
    if _ALL is None:
        _ALL = set(os.sched_getaffinity(0))
    return _ALL


@contextlib.contextmanager
def client_pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Pin this process (all its threads) for the block; restore afterwards."""
    _all_cpus()
    if cpus is None:
        yield
        return
    pin_process(os.getpid(), cpus)
    try:
        yield
    finally:
        pin_process(os.getpid(), None)


class ServerProcess:
    """``python -m MODULE ARGS`` that prints READY when it serves; killed by pid."""

    def __init__(self, module: str, args: Sequence[str], *, cpus: frozenset[int] | None = None,
                 pass_fds: Sequence[int] = (), timeout: float = 30.0) -> None:
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._err, env=python_env(),
            pass_fds=tuple(pass_fds), preexec_fn=preexec)
        self.pid = self.proc.pid
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise TimeoutError(f"server {self.proc.args!r} not ready in {timeout} s"
                                       + self.stderr_tail())
                line = self.proc.stdout.readline()
                if line.strip() == b"READY":
                    return
                if not line:
                    raise RuntimeError(f"server exited with {self.proc.wait()}"
                                       + self.stderr_tail())
        finally:
            sel.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        self._err.seek(0)
        text = self._err.read().decode(errors="replace").strip()
        return ": " + text.splitlines()[-1] if text else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


class BenchTimeout(RuntimeError):
    """A measurement took far longer than it could: a peer stopped answering."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with BenchTimeout after ``seconds`` (main thread only),
    so a peer that hangs costs one row, not the whole run."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: object) -> None:
        raise BenchTimeout(f"not finished within {seconds:.0f} s "
                           "(a hung peer or an overloaded machine)")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
