"""osapi.one_cpu_with, and the client and service giving up spinning when
both ends may use only one CPU (a spinner would hold the CPU its peer needs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import aether
from aether import osapi
from aether.testing import python_env

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
CPU_A, CPU_B = sorted(os.sched_getaffinity(0))[:2]


def _pinned_sleeper(cpu: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c",
         f"import os, sys; os.sched_setaffinity(0, {{{cpu}}}); print('pinned', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=python_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "pinned"
    return proc


def _in_child_pinned_to(cpu: int, probe: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}}); {probe}"],
        capture_output=True, text=True, timeout=60, env=python_env())
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_one_cpu_only_when_both_share_a_single_cpu():
    peer = _pinned_sleeper(CPU_A)
    try:
        probe = f"from aether import osapi; print(osapi.one_cpu_with({peer.pid}))"
        assert _in_child_pinned_to(CPU_A, probe) == "True"
        assert _in_child_pinned_to(CPU_B, probe) == "False"
        assert osapi.one_cpu_with(peer.pid) is False  # this process may use both CPUs
    finally:
        peer.kill()
        peer.wait()
    assert osapi.one_cpu_with(peer.pid) is False  # gone: spinning stays as configured


def test_client_on_the_services_only_cpu_does_not_spin(testsvc):
    os.sched_setaffinity(testsvc.pid, {CPU_A})
    probe = (f"import aether; c = aether.Client({str(testsvc.socket_path)!r}); "
             "ok = c.echo(b'x') == b'x'; print(ok, c.spin); c.close()")
    assert _in_child_pinned_to(CPU_A, probe) == "True 0.0"
    default_spin = aether.Client.__init__.__kwdefaults__["spin"]
    assert default_spin > 0
    assert _in_child_pinned_to(CPU_B, probe) == f"True {default_spin}"
