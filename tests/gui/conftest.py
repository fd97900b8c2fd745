"""The GUI's tests drive the real window (pytest-qt) against real service
processes. Qt renders offscreen: no display is needed."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6.QtWidgets")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from aether.testing import ServiceProcess  # noqa: E402


@pytest.fixture
def window(qtbot) -> Iterator:
    """The main window, shown offscreen, with a fast status poll."""
    from aether.gui import tasks
    from aether.gui.window import MainWindow

    tasks.install()
    win = MainWindow(poll_ms=200, tray=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.shutdown()
    tasks.wait_idle(10_000)


@pytest.fixture
def strict_testsvc(runtime_dir: Path) -> Iterator[ServiceProcess]:
    """The test service with a policy that allows privileged operations to
    uid 54321 only: this test process (root or not) is not authorized."""
    from e2e_support import E2E

    env = {"PYTHONPATH": os.pathsep.join([str(E2E), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "AETHER_RUNTIME_DIR": os.environ.get("AETHER_RUNTIME_DIR", "")}
    svc = ServiceProcess("gui_strictsvc:service", runtime_dir / "strict.ctl", env=env).start()
    yield svc
    svc.kill()
