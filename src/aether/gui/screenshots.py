"""PNGs of the main views, for the documentation (``aether gui --screenshot
DIR SERVICE`` and ``scripts/screenshots.py``).

Waiting is done by running the event loop until a condition holds, with a
deadline: the window's own background work delivers what it waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from aether.errors import AetherTimeoutError

from .window import MainWindow


def pump_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Run the Qt event loop until ``predicate()`` is true (or time runs out)."""
    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(loop.quit)
    timer.start()
    try:
        while not predicate():
            if time.monotonic() > deadline:
                raise AetherTimeoutError(f"screenshots: gave up waiting for {what or predicate}")
            loop.exec()
    finally:
        timer.stop()


def settle(ms: int = 150) -> None:
    """Let layouts and paints finish."""
    end = time.monotonic() + ms / 1000
    pump_until(lambda: time.monotonic() >= end, timeout=ms / 1000 + 5)


def grab(window: MainWindow, path: Path) -> Path:
    settle()
    pixmap = window.grab()
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({pixmap.width()}x{pixmap.height()})", flush=True)
    return path


def connect(window: MainWindow, target: str) -> None:
    window.start(target)
    pump_until(lambda: window.info is not None, what=f"a connection to {target}")
    pump_until(lambda: window.services.refreshes > 0, what="the service list")


def run(window: MainWindow, name: str, values: dict[str, Any] | None = None) -> Any:
    window.operations.select(name)
    form = window.operations.form()
    if form is not None and values:
        form.set_values(values)
    window.operations.run()
    return window.running.rows[0]


def take_screenshots(app: QApplication, window: MainWindow, out_dir: str,
                     target: str | None) -> int:
    """The generic set: connection and handshake, a form, a result."""
    if not target:
        print("aether gui --screenshot needs a SERVICE to connect to")
        return 2
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    connect(window, target)
    grab(window, out / "services-handshake.png")
    row = run(window, "aether.status")
    pump_until(lambda: row.run.done, what="aether.status")
    grab(window, out / "result.png")
    window.quit()
    return 0
