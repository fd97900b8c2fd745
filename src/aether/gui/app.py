"""Starting the control panel: the application, the palette, the window.

Qt modules are imported here, not by ``aether.gui`` itself, so that
``aether --help`` never pays for them.
"""

from __future__ import annotations

import os
import sys
import time


def process_age_ms() -> float:
    """Milliseconds since this process started (from /proc, 10 ms ticks)."""
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    start_ticks = int(fields[19])  # field 22 of proc(5), counted after "(comm)"
    ticks = os.sysconf("SC_CLK_TCK")
    return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / ticks) * 1000


def main(target: str | None = None, *, transport: str = "auto", theme: str = "auto",
         startup_probe: bool = False, screenshot_dir: str | None = None,
         poll_ms: int = 1000) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from . import tasks, theme as themes

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Aether")
    app.setApplicationDisplayName("Aether control panel")
    app.setDesktopFileName("aether-gui")
    themes.apply(app, theme)
    tasks.install()

    from .window import MainWindow

    window = MainWindow(transport=transport, poll_ms=poll_ms)
    if screenshot_dir is not None:
        from .screenshots import take_screenshots

        window.show()
        return take_screenshots(app, window, screenshot_dir, target)
    window.show()
    if startup_probe:
        def probe() -> None:
            print(f"window usable after {process_age_ms():.0f} ms "
                  f"(platform {app.platformName()})", flush=True)
            window.quit()
            app.quit()

        # A zero timer fires once the event loop has run: after the first paint.
        QTimer.singleShot(0, probe)
        app.exec()
        return 0
    QTimer.singleShot(0, lambda: window.start(target))
    # Ctrl+C and SIGTERM quit cleanly (sessions closed with GOODBYE). Python
    # runs signal handlers only when it gets control: a timer gives it some.
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _n, _f: window.quit())
    wakeup = QTimer()
    wakeup.timeout.connect(lambda: None)
    wakeup.start(200)
    app.setQuitOnLastWindowClosed(window.tray is None)
    code = app.exec()
    window.shutdown()
    tasks.wait_idle(3000)
    return int(code)
