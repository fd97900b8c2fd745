"""The Guard demo, played through the window (``aether demo --gui`` and the
screenshots): baseline, live events while the tree is tampered with, check,
the report, quarantine and restore. Each step clicks the same buttons a
person would and waits for the window to show the outcome.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aether.errors import AetherTimeoutError

from .screenshots import pump_until, settle
from .window import MainWindow

if TYPE_CHECKING:
    from .guard import GuardView

Hook = Callable[[str], None]


def _finish_last(window: MainWindow, what: str, timeout: float) -> None:
    row = window.running.rows[0]
    pump_until(lambda: row.run.done, timeout, what)
    if row.run.error is not None:
        raise RuntimeError(f"{what} failed: {row.run.error}")


def touch(directory: Path) -> None:
    """An inotify "attrib" event on ``directory`` that changes no recorded
    time (only its ctime, which the demo's tampering changes anyway)."""
    st = os.stat(directory)
    os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns))


def _until_watching(guard: GuardView, directory: Path, timeout: float) -> None:
    """The service sets its inotify watches after the subscription starts and
    says nothing when done: touch a watched directory until an event shows."""
    deadline = time.monotonic() + timeout
    while not guard.events.events:
        if time.monotonic() > deadline:
            raise RuntimeError("guard.watch reported no event")
        touch(directory)
        with contextlib.suppress(AetherTimeoutError):
            pump_until(lambda: bool(guard.events.events), 0.3, "a live event")


def guard_tour(window: MainWindow, target: str, tamper: Callable[[], list[str]],
               suspicious: Path, *, pause_ms: int = 0, hook: Hook | None = None,
               timeout: float = 120.0) -> None:
    """Play the demo; ``hook(name)`` is called at each view worth a screenshot."""

    def shot(name: str) -> None:
        settle(max(pause_ms, 200))
        if hook is not None:
            hook(name)

    def say(text: str) -> None:
        window.log.add("info", f"demo: {text}")
        window.statusBar().showMessage(f"Demo: {text}", 10_000)

    window.start(target)
    pump_until(lambda: window.guard_view is not None and window.guard_view.status_updates > 0,
               timeout, "the Guard views")
    guard = window.guard_view
    window.tabs.setCurrentWidget(guard)
    window.right_split.setSizes([560, 110, 190])  # room for the Guard views
    guard.tabs.setCurrentWidget(guard.dashboard)
    say("taking a baseline (guard.baseline, privileged)")
    guard.dashboard.baseline_button.click()
    _finish_last(window, "guard.baseline", timeout)
    pump_until(lambda: guard.status.get("baseline") is not None, timeout, "the new baseline")

    say("watching live events while the tree is tampered with")
    guard.tabs.setCurrentWidget(guard.events)
    guard.events.toggle.click()
    _until_watching(guard, suspicious.parent, timeout)
    for line in tamper():
        window.log.add("warning", f"demo: tampering: {line}")
    seen = len(guard.events.events)
    pump_until(lambda: len(guard.events.events) >= seen + 4, timeout, "live events")
    shot("live-events")
    guard.events.toggle.click()

    say("checking the tree against the baseline (guard.check)")
    guard.tabs.setCurrentWidget(guard.dashboard)
    guard.dashboard.check_button.click()
    _finish_last(window, "guard.check", timeout)
    pump_until(lambda: guard.status.get("last_report") is not None
               and guard.report.changes and not guard.report.loading, timeout, "the report")
    shot("dashboard")
    guard.tabs.setCurrentWidget(guard.report)
    shot("report")

    say(f"quarantining {suspicious.name}")
    table = guard.report.table
    table.clearSelection()
    for r, path in enumerate(guard.report.row_paths):
        if path == str(suspicious):
            table.selectRow(r)
            break
    guard.report.quarantine_button.click()
    _finish_last(window, "guard.quarantine", timeout)
    guard.tabs.setCurrentWidget(guard.vault)
    pump_until(lambda: bool(guard.vault.entries), timeout, "the vault")
    guard.vault.table.selectRow(0)
    shot("quarantine")

    say("restoring it exactly (guard.restore)")
    guard.vault.restore_button.click()
    _finish_last(window, "guard.restore", timeout)
    pump_until(lambda: not guard.vault.entries, timeout, "the vault to empty")

    say("accepting the report's remaining changes (guard.accept)")
    guard.tabs.setCurrentWidget(guard.report)
    guard.report.accept_all.click()
    _finish_last(window, "guard.accept", timeout)
    guard.tabs.setCurrentWidget(guard.dashboard)
    say("done: the service keeps running until you close the window")
