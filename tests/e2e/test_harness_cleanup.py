"""A service started by aether.testing dies with the process that started it,
even when that process is SIGKILLed and cannot clean up (a crashed test
run must not leave services behind)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from aether.testing import python_env

HARNESS = textwrap.dedent("""
    import sys, threading
    from aether.testing import ServiceProcess
    svc = ServiceProcess("aether.bench.mapping_probe:service", sys.argv[1])
    if sys.argv[2] == "thread":  # started from another thread: no death signal
        t = threading.Thread(target=svc.start); t.start(); t.join()
    else:
        svc.start()
    print(svc.pid, flush=True)
    sys.stdin.read()  # until killed
""")


def _start_harness(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS, str(tmp_path / "svc.ctl"), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=python_env({"AETHER_RUNTIME_DIR": str(tmp_path)}))
    assert harness.stdout is not None
    line = harness.stdout.readline()
    assert line.strip().isdigit(), f"harness printed {line!r}"
    return harness, int(line)


def _ends_within(pid: int, timeout: float) -> bool:
    fd = os.pidfd_open(pid)
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_service_dies_with_a_killed_harness(tmp_path: Path) -> None:
    harness, service_pid = _start_harness(tmp_path, "main")
    try:
        assert not _ends_within(service_pid, 0.0)
        harness.kill()  # SIGKILL: no atexit, no finally, no cleanup
        harness.wait(10)
        assert _ends_within(service_pid, 10.0), "the orphaned service is still running"
    finally:
        harness.kill()
        try:
            os.kill(service_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_service_started_from_a_thread_outlives_that_thread(tmp_path: Path) -> None:
    # The death signal follows the forking thread, so a service started from a
    # thread that has ended must not get it: it is still serving here.
    harness, service_pid = _start_harness(tmp_path, "thread")
    try:
        assert not _ends_within(service_pid, 0.5)
    finally:
        harness.kill()
        harness.wait(10)
        try:
            os.kill(service_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
