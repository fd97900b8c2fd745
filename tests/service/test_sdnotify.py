"""sd_notify against a datagram socket the test binds: the Notifier itself,
and a real Guard process (READY, STATUS, WATCHDOG cadence, STOPPING)."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from aether.service.sdnotify import Notifier
from aether.testing import python_env


@pytest.fixture
def notify_socket():
    directory = tempfile.mkdtemp(prefix="ag-notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def _recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_notifier_sends_each_message_as_one_datagram(notify_socket):
    path, sock = notify_socket
    n = Notifier(path)
    n.ready("listening")
    assert _recv(sock) == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "listening"}
    n.status("busy")
    assert _recv(sock) == {"STATUS": "busy"}
    n.stopping("bye")
    assert _recv(sock) == {"STOPPING": "1", "STATUS": "bye"}
    n.close()
    assert not Notifier("").enabled and Notifier("").notify("READY=1") is False


def test_notifier_reaches_an_abstract_socket():
    name = f"ag-notify-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        Notifier("@" + name).status("abstract")
        assert sock.recv(100) == b"STATUS=abstract"
    finally:
        sock.close()


def test_watchdog_cadence_is_half_the_period(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    healthy = [True]
    n = Notifier(path)
    assert n.watchdog_interval() == pytest.approx(0.1)
    n.start_watchdog(lambda: healthy[0])
    times = []
    for _ in range(6):
        assert sock.recv(100) == b"WATCHDOG=1"
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Sent every ~0.1 s: never faster than the half period (the loop waits it out).
    assert min(gaps) > 0.05 and sorted(gaps)[len(gaps) // 2] < 0.5, gaps
    healthy[0] = False  # an unhealthy service stops petting: systemd will restart it
    # At most the one ping already past its health check may still land; then
    # silence for five periods.
    sock.settimeout(0.5)
    late = 0
    with pytest.raises(TimeoutError):
        while True:
            sock.recv(100)
            late += 1
            assert late <= 1, "the watchdog kept petting after the service became unhealthy"
    n.close()
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier(path).watchdog_interval() is None  # the watchdog is for another process


def test_guard_process_speaks_sd_notify(notify_socket, tmp_path):
    path, sock = notify_socket
    tree = tmp_path / "tree"
    tree.mkdir()
    policy = tmp_path / "guard.toml"
    policy.write_text(f'[[paths]]\npath = "{tree}"\n')
    runtime = Path(tempfile.mkdtemp(prefix="ag-rt-"))
    env = python_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000",
                      "AETHER_RUNTIME_DIR": str(runtime), "AETHER_GUARD_POLICY": str(policy),
                      "AETHER_GUARD_STATE": str(tmp_path / "state")})
    proc = subprocess.Popen([sys.executable, "-m", "aether", "service", "run", "guard",
                             "--socket", str(runtime / "guard.ctl")], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        ready = _recv(sock)
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert "listening on" in ready["STATUS"]
        times = []
        while len(times) < 5:
            if sock.recv(100) == b"WATCHDOG=1":
                times.append(time.monotonic())
        assert min(b - a for a, b in itertools.pairwise(times)) > 0.025
        proc.send_signal(signal.SIGTERM)
        while True:
            msg = sock.recv(4096).decode()
            if "STOPPING=1" in msg.split("\n"):
                break
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        shutil.rmtree(runtime, ignore_errors=True)
