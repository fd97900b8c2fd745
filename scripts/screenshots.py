"""Screenshots of the control panel for the README (``docs/images/``).

Starts the e2e test service, then Aether Guard on the demo's tree, each in
an isolated runtime directory, drives the real window through the main views
and saves a PNG of each. Runs under Xvfb (``xvfb-run -a``) or, without a
display, on Qt's offscreen platform::

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--theme light]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--theme", choices=["auto", "light", "dark"], default="light")
    parser.add_argument("--no-guard", action="store_true", help="skip the Guard views")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from aether.gui import tasks, theme
    from aether.gui.screenshots import connect, grab, pump_until, run, settle
    from aether.gui.window import MainWindow
    from aether.testing import ServiceProcess, isolated_runtime
    from aether.testing.process import python_env

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv[:1])
    theme.apply(app, args.theme)
    tasks.install()
    env = {"PYTHONPATH": str(ROOT / "tests" / "e2e") + os.pathsep
           + python_env().get("PYTHONPATH", "")}
    with isolated_runtime() as rt:
        env["AETHER_RUNTIME_DIR"] = str(rt)
        services = [ServiceProcess("aether_testsvc:service", rt / "testsvc.ctl", env=env)]
        for svc in services:
            svc.start()
        try:
            window = MainWindow(tray=False)
            window.resize(1440, 900)
            window.show()
            connect(window, str(rt / "testsvc.ctl"))
            window.operations.select("test.slow")
            grab(window, out / "gui-services-handshake.png")

            first = run(window, "test.slow", {"steps": 400, "delay": 0.02})
            second = run(window, "test.slow", {"steps": 150, "delay": 0.05})
            pump_until(lambda: first.bar.value() > 250 and second.bar.value() > 100,
                       what="progress")
            window.bottom.setCurrentWidget(window.log)
            grab(window, out / "gui-running-operations.png")
            window.cancel_all()
            pump_until(lambda: first.run.done and second.run.done, what="the cancels")

            row = run(window, "aether.status")
            pump_until(lambda: row.run.done, what="aether.status")
            window.result.tree.expandAll()
            grab(window, out / "gui-result.png")

            window.operations.select("test.privileged")
            settle()
            window.quit()
        finally:
            window.shutdown()
            tasks.wait_idle(5000)
            for svc in services:
                svc.kill()
    if not args.no_guard:
        _guard_views(out)
    return 0


def _guard_views(out: Path) -> None:
    """The Guard demo through the window, a PNG at each view."""
    from PySide6.QtWidgets import QApplication

    from aether.cli.demo_gui import guard_setup
    from aether.gui import tasks, theme
    from aether.gui.screenshots import grab
    from aether.gui.tour import guard_tour
    from aether.gui.window import MainWindow

    with guard_setup(240) as (setup, _service):
        os.environ["AETHER_RUNTIME_DIR"] = setup.env["AETHER_RUNTIME_DIR"]  # the services list
        window = MainWindow(tray=False)
        window.resize(1440, 900)
        window.show()
        try:
            guard_tour(window, str(setup.socket_path), setup.tamper, setup.suspicious,
                       hook=lambda name: grab(window, out / f"gui-guard-{name}.png"))
            # The same view in the dark palette (what a dark desktop gets).
            app = QApplication.instance()
            theme.apply(app, "dark")
            guard = window.guard_view
            guard.tabs.setCurrentWidget(guard.report)
            guard.report.table.clearSelection()
            window.bottom.setCurrentWidget(window.log)
            grab(window, out / "gui-guard-report-dark.png")
            theme.apply(app, "light")
            window.quit()
        finally:
            window.shutdown()
            tasks.wait_idle(5000)


if __name__ == "__main__":
    sys.exit(main())
