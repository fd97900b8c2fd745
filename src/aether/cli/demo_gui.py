"""``aether demo --gui``: the Guard demo played through the control panel.

Same flow as the terminal demo (same tree, policy and tampering, from
:mod:`aether.cli.demo_cmd`), but every step is a click in the window; the
window stays open afterwards and closing it stops the service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class GuardSetup:
    work: Path
    tree: Path
    socket_path: Path
    env: dict[str, str]
    tamper: Callable[[], list[str]]
    suspicious: Path


@contextlib.contextmanager
def guard_setup(files: int = 240, *, keep: bool = False,
                extra_env: dict[str, str] | None = None) -> Iterator[tuple[GuardSetup, object]]:
    """A demo tree, its policy and Guard running on it as the current user."""
    from aether.testing import ServiceProcess

    from .demo_cmd import make_tree, tamper, write_policy

    work = Path(tempfile.mkdtemp(prefix="aether-demo-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    os.chmod(runtime, 0o700)
    tree = work / "tree"
    tree.mkdir()
    make_tree(tree, files)
    (tree / "dir05" / "current").symlink_to("file0005.bin")
    policy = work / "guard.toml"
    write_policy(policy, tree)
    socket_path = runtime / "guard.ctl"
    env = {"AETHER_RUNTIME_DIR": str(runtime), "AETHER_GUARD_POLICY": str(policy),
           "AETHER_GUARD_STATE": str(work / "state"), **(extra_env or {})}
    service = ServiceProcess("guard", socket_path, env=env)
    setup = GuardSetup(work, tree, socket_path, env, lambda: tamper(tree),
                       tree / "dir03" / ".hidden-payload")
    try:
        service.start()
        yield setup, service
    finally:
        service.kill()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") == "offscreen")


def run_gui_demo(files: int, transport: str, keep: bool, *, quit_after: bool = False) -> int:
    """Returns the exit code. ``quit_after`` ends when the tour ends (tests)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from aether.gui import tasks, theme
    from aether.gui.tour import guard_tour
    from aether.gui.window import MainWindow

    app = QApplication.instance() or QApplication(["aether-demo"])
    assert isinstance(app, QApplication)
    theme.apply(app, "auto")
    tasks.install()
    outcome = {"code": 0}
    with guard_setup(files, keep=keep) as (setup, service):
        os.environ["AETHER_RUNTIME_DIR"] = setup.env["AETHER_RUNTIME_DIR"]  # the services list
        window = MainWindow(transport=transport, tray=False)
        window.setWindowTitle("Aether demo: Aether Guard through the control panel")
        window.show()

        def play() -> None:
            try:
                guard_tour(window, str(setup.socket_path), setup.tamper, setup.suspicious,
                           pause_ms=0 if quit_after else 700)
            except Exception as exc:
                window.log.add("error", f"demo: {exc}")
                outcome["code"] = 5
            if quit_after:
                window.quit()

        QTimer.singleShot(0, play)
        app.setQuitOnLastWindowClosed(True)
        app.exec()
        window.shutdown()
        tasks.wait_idle(5000)
        code = service.stop()  # type: ignore[attr-defined]
        if keep:
            print(f"demo files kept in {setup.work}")
    return outcome["code"] or (5 if code else 0)


def start_gui_demo(files: int, transport: str, keep: bool) -> int:
    """``aether demo --gui``: check for a display and PySide6 first."""
    import click

    try:
        import PySide6.QtWidgets  # noqa: F401
    except ImportError:
        click.echo("aether demo --gui needs PySide6: pip install 'aether-ipc[gui]'", err=True)
        return 5
    if not has_display():
        click.echo("aether demo --gui needs a display (DISPLAY or WAYLAND_DISPLAY); "
                   "without one, run `aether demo`", err=True)
        return 5
    # Set by the tests (and usable for a kiosk loop): end when the tour ends.
    quit_after = os.environ.get("AETHER_DEMO_EXIT_WHEN_DONE") == "1"
    return run_gui_demo(files, transport, keep, quit_after=quit_after)
