"""``aether gui`` as a user starts it (offscreen, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys

from PySide6.QtGui import QImage

from aether.testing.process import python_env


def _gui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = python_env({"QT_QPA_PLATFORM": "offscreen"})
    return subprocess.run([sys.executable, "-m", "aether", "gui", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_startup_probe_reports_a_usable_window():
    proc = _gui("--startup-probe")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "window usable after" in proc.stdout and "ms" in proc.stdout


def test_screenshot_option_saves_the_views(testsvc, tmp_path):
    proc = _gui("--screenshot", str(tmp_path), str(testsvc.socket_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in ("services-handshake.png", "result.png"):
        image = QImage(str(tmp_path / name))
        assert not image.isNull() and image.width() >= 800 and image.height() >= 500


def test_screenshot_needs_a_service(tmp_path):
    proc = _gui("--screenshot", str(tmp_path))
    assert proc.returncode == 2 and "needs a SERVICE" in proc.stdout


def test_sigterm_quits_cleanly(testsvc):
    """``aether gui SERVICE`` connects, and quits with 0 on SIGTERM."""
    import signal

    from aether.client import Client
    from aether.testing import wait_until

    env = python_env({"QT_QPA_PLATFORM": "offscreen"})
    proc = subprocess.Popen([sys.executable, "-m", "aether", "gui", str(testsvc.socket_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with Client(testsvc.socket_path, transport="socket") as probe:
            def gui_session() -> bool:
                return any(s.pid == proc.pid for s in probe.status().session_list)

            wait_until(gui_session, 60, "the GUI's session", watch_pid=proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
