"""The Guard views against a real Aether Guard on a tree the test makes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt

from aether.cli.demo_gui import GuardSetup, guard_setup
from aether.gui.tour import guard_tour
from aether.testing.process import python_env

TIMEOUT = 30_000


@pytest.fixture
def guard_demo() -> Iterator[GuardSetup]:
    with guard_setup(60) as (setup, _service):
        yield setup


def visible_paths(report) -> list[str]:
    return [report.row_paths[r] for r in report.visible_rows()]


def test_guard_tour_dashboard_report_vault_events(window, qtbot, guard_demo):
    shots: list[str] = []
    content = None

    def hook(name: str) -> None:
        nonlocal content
        shots.append(name)
        guard = window.guard_view
        if name == "live-events":
            kinds = {(e["kind"], os.path.basename(e["path"])) for e in guard.events.events}
            assert ("created", ".hidden-payload") in kinds
            assert ("deleted", "file0002.bin") in kinds
        if name == "dashboard":
            counts = {k: label.text() for k, label in guard.dashboard.counts.items()}
            last = guard.status["last_report"]
            assert last["added"] == 1 and last["removed"] == 1 and last["changed"] >= 3
            assert f"<b>{last['changed']}</b>" in counts["changed"]
            assert "old" in guard.dashboard.baseline.text()
            assert "change(s) in report" in window.guard_label.text()
        if name == "report":
            report = guard.report
            rows = {(report.row_paths[r].rsplit("/", 1)[-1], report.table.item(r, 3).text()):
                    (report.table.item(r, 4).text(), report.table.item(r, 5).text())
                    for r in range(report.table.rowCount())}
            assert rows[("file0001.bin", "mode")] == ("-rw-r--r-- (0644)", "-rwsr-xr-x (4755)")
            assert rows[("current", "target")] == ("file0005.bin", "/etc/shadow")
            assert ("file0000.bin", "sha256") in rows
            report.filter.setText("hidden")
            assert visible_paths(report) == [str(guard_demo.suspicious)]
            report.filter.setText("")
            report.kind_boxes["changed"].setChecked(False)
            assert {report.row_kinds[r] for r in report.visible_rows()} == {"added", "removed"}
            report.kind_boxes["changed"].setChecked(True)
            content = guard_demo.suspicious.read_bytes()
        if name == "quarantine":
            assert not guard_demo.suspicious.exists()
            assert guard.vault.entries[0]["path"] == str(guard_demo.suspicious)

    guard_tour(window, str(guard_demo.socket_path), guard_demo.tamper, guard_demo.suspicious,
               hook=hook, timeout=TIMEOUT / 1000)
    assert shots == ["live-events", "dashboard", "report", "quarantine"]
    guard = window.guard_view
    assert guard_demo.suspicious.read_bytes() == content  # restored exactly
    qtbot.waitUntil(lambda: not guard.vault.entries, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: "no unaccepted changes" in window.guard_label.text(),
                    timeout=TIMEOUT)


def test_accept_selected_changes(window, qtbot, guard_demo):
    window.start(str(guard_demo.socket_path))
    qtbot.waitUntil(lambda: window.guard_view is not None
                    and window.guard_view.status_updates > 0, timeout=TIMEOUT)
    guard = window.guard_view
    window.tabs.setCurrentWidget(guard)
    qtbot.mouseClick(guard.dashboard.baseline_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: guard.status.get("baseline") is not None, timeout=TIMEOUT)
    guard_demo.tamper()
    qtbot.mouseClick(guard.dashboard.check_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(guard.report.changes) and not guard.report.loading,
                    timeout=TIMEOUT)
    report = guard.report
    guard.tabs.setCurrentWidget(report)
    target = str(guard_demo.tree / "dir01" / "file0001.bin")
    report.table.clearSelection()
    report.table.selectRow(report.row_paths.index(target))
    assert report.selected_paths() == [target]
    with qtbot.waitSignal(window.operation_finished, timeout=TIMEOUT) as finished:
        qtbot.mouseClick(report.accept_selected, Qt.MouseButton.LeftButton)
    run = finished.args[0]
    assert run.name == "guard.accept" and run.error is None and run.result["accepted"] == 1
    qtbot.waitUntil(lambda: any(c["path"] == target and c["accepted"] for c in report.changes),
                    timeout=TIMEOUT)
    assert sum(c["accepted"] for c in report.changes) == 1
    row = report.row_paths.index(target)
    assert "accepted" in report.table.item(row, 0).text()


def test_demo_gui_plays_to_the_end():
    """``aether demo --gui`` as a user runs it (offscreen), to the end of the tour."""
    env = python_env({"QT_QPA_PLATFORM": "offscreen", "AETHER_DEMO_EXIT_WHEN_DONE": "1"})
    proc = subprocess.run([sys.executable, "-m", "aether", "demo", "--gui", "--files", "40"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_demo_gui_needs_a_display():
    env = python_env()
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "aether", "demo", "--gui"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5 and "needs a display" in proc.stderr
