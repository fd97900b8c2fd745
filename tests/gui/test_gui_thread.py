"""No call that can block on IPC runs on the GUI thread.

The real Client runs; its blocking entry points are wrapped to record which
thread called them (a spy around the real methods, not a stand-in)."""

from __future__ import annotations

import threading

from test_window import TIMEOUT, connect, run_op

from aether.client.client import Client

BLOCKING = ("_connect", "_drive", "_send_cancel", "close", "_reconnect")


def test_ipc_never_runs_on_the_gui_thread(window, qtbot, testsvc, monkeypatch):
    calls: list[tuple[str, bool]] = []
    main = threading.main_thread()
    for name in BLOCKING:
        real = getattr(Client, name)

        def spy(self, *args, __real=real, __name=name, **kwargs):
            calls.append((__name, threading.current_thread() is main))
            return __real(self, *args, **kwargs)

        monkeypatch.setattr(Client, name, spy)

    connect(window, qtbot, testsvc)
    row = run_op(window, qtbot, "test.slow", steps="500", delay="0.02")
    qtbot.waitUntil(lambda: row.bar.value() > 0, timeout=TIMEOUT)
    row.cancel_button.click()
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any(n == "_drive" for n, _ in calls), timeout=TIMEOUT)
    window.disconnect_service()
    qtbot.waitUntil(lambda: sum(n == "close" for n, _ in calls) >= 2, timeout=TIMEOUT)
    names = {n for n, _ in calls}
    assert {"_connect", "_drive", "_send_cancel", "close"} <= names
    assert not [n for n, on_main in calls if on_main], calls
