"""The control panel against real service processes: no mocked Client."""

from __future__ import annotations

import json

from e2e_support import start_service
from PySide6.QtCore import Qt

from aether.client import steps as S

TIMEOUT = 20_000  # ms: a loaded two-core machine starts services slowly


def connect(window, qtbot, svc) -> None:
    window.open_service(str(svc.socket_path))
    qtbot.waitUntil(lambda: window.info is not None, timeout=TIMEOUT)


def fill(qtbot, editor, text: str) -> None:
    editor.edit.clear()
    qtbot.keyClicks(editor.edit, text)


def run_op(window, qtbot, name: str, **values: str):
    window.operations.select(name)
    qtbot.waitUntil(lambda: window.operations.current == name, timeout=TIMEOUT)
    form = window.operations.form()
    for field, text in values.items():
        fill(qtbot, form.fields[field], text)
    before = len(window.running.rows)
    qtbot.mouseClick(window.operations.run_button, Qt.MouseButton.LeftButton)
    if len(window.running.rows) == before:
        return None
    return window.running.rows[0]


def test_services_listed_and_handshake_steps_appear(window, qtbot, testsvc):
    window.start()
    qtbot.waitUntil(lambda: str(testsvc.socket_path) in window.services.rows, timeout=TIMEOUT)
    row = window.services.rows[str(testsvc.socket_path)]
    assert row["running"] and row["pid"] == testsvc.pid

    seen: list[str] = []
    window.services.tree.setCurrentItem(window.services.tree.topLevelItem(0))
    qtbot.mouseClick(window.services.connect_button, Qt.MouseButton.LeftButton)
    window.link.step.connect(lambda step, _text, _ms: seen.append(step))
    qtbot.waitUntil(lambda: S.READY in window.handshake.step_names, timeout=TIMEOUT)
    # The seed's steps, each shown as it happened, in order.
    names = window.handshake.step_names
    order = [S.CONNECTED, S.SERVICE_VERIFIED, S.HELLO, S.BLOCKS_ALLOCATED, S.PATTERN_WRITTEN,
             S.ADDRESSES_SENT, S.SERVICE_READ_PATTERN, S.ZEROS_VERIFIED, S.READY]
    assert [n for n in names if n in order] == order
    assert len(window.handshake.entries) == len(names)
    assert "0x1337D00D" in window.handshake.steps.toPlainText()
    qtbot.waitUntil(lambda: window.info is not None, timeout=TIMEOUT)
    assert "Transport: memory" in window.handshake.transport.text()
    assert str(testsvc.pid) in window.handshake.summary.text()
    ops = [window.operations.list.item(i).text() for i in range(window.operations.list.count())]
    assert "test.slow" in ops and "aether.describe" in ops
    privileged = window.operations.list.findItems("test.privileged", Qt.MatchFlag.MatchExactly)
    assert not privileged[0].icon().isNull()  # privileged operations are marked
    assert "privileged" in privileged[0].data(Qt.ItemDataRole.AccessibleTextRole)
    assert "connected" in window.state_label.text() or "testsvc" in window.state_label.text()


def test_socket_transport_says_why(window, qtbot, testsvc):
    window.transport = "socket"
    connect(window, qtbot, testsvc)
    assert window.info.transport == "socket"
    assert S.SOCKET_MODE not in window.handshake.step_names
    assert "Transport: socket" in window.handshake.transport.text()
    assert "as asked" in window.handshake.transport.text()


def test_mapping_transport_shown(window, qtbot, testsvc):
    window.transport = "mapping"
    connect(window, qtbot, testsvc)
    assert window.info.transport == "mapping"
    assert S.MAPPING_MODE in window.handshake.step_names
    assert S.BLOCKS_ALLOCATED not in window.handshake.step_names
    assert "Transport: mapping" in window.handshake.transport.text()
    row = run_op(window, qtbot, "test.slow", steps="5", delay="0.01")
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    assert row.run.result == 5


def test_generated_form_runs_with_progress_and_result(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    form_row = run_op(window, qtbot, "test.slow", steps="40", delay="0.05")
    assert form_row is not None
    progress: list[int] = []
    form_row.run.progress.connect(lambda permille, _m: progress.append(permille))
    elapsed_texts = set()

    def moving() -> bool:
        elapsed_texts.add(form_row.elapsed.text())
        return 0 < form_row.bar.value() < 1000 and form_row.message.text().startswith("step")

    qtbot.waitUntil(moving, timeout=TIMEOUT)

    def finished() -> bool:
        elapsed_texts.add(form_row.elapsed.text())
        return form_row.run.done

    qtbot.waitUntil(finished, timeout=TIMEOUT)
    assert form_row.run.error is None and form_row.run.result == 40
    assert form_row.bar.value() == 1000
    assert len(progress) >= 2 and progress == sorted(progress)
    # The window kept painting while the operation ran (the elapsed time moved).
    assert len(elapsed_texts) >= 2
    assert "test.slow" in window.result.title.text() and "OK" in window.result.title.text()
    assert window.result.text.toPlainText() == "40"
    assert any("test.slow done" in t for t in window.log.texts()[:2])


def test_structured_result_as_tree_and_table_copy_and_export(window, qtbot, testsvc, tmp_path):
    connect(window, qtbot, testsvc)
    run_op(window, qtbot, "aether.status")
    qtbot.waitUntil(lambda: "aether.status" in window.result.title.text(), timeout=TIMEOUT)
    assert window.result.mode == "tree"
    keys = {window.result.tree.topLevelItem(i).text(0)
            for i in range(window.result.tree.topLevelItemCount())}
    assert {"service", "pid", "uptime_s", "sessions"} <= keys
    out = tmp_path / "status.json"
    window.result.export(str(out))
    data = json.loads(out.read_text())
    assert data["pid"] == testsvc.pid
    window.result.copy()
    from PySide6.QtGui import QGuiApplication

    assert json.loads(QGuiApplication.clipboard().text())["pid"] == testsvc.pid

    window.result.show_result("rows", [{"a": 1, "b": "x"}, {"a": 2, "c": True}])
    assert window.result.mode == "table"
    assert window.result.table.rowCount() == 2 and window.result.table.columnCount() == 3


def test_cancel_a_running_operation(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    row = run_op(window, qtbot, "test.slow", steps="2000", delay="0.05")
    qtbot.waitUntil(lambda: row.bar.value() > 0, timeout=TIMEOUT)
    with qtbot.waitSignal(row.run.finished, timeout=TIMEOUT):
        qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert row.run.error is not None and row.run.error.status_name == "CANCELLED"
    assert row.bar.value() < 1000
    assert "cancelled" in row.message.text()
    assert "CANCELLED" in window.result.title.text()


def test_several_operations_at_once(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    first = run_op(window, qtbot, "test.slow", steps="400", delay="0.02")
    second = run_op(window, qtbot, "test.slow", steps="400", delay="0.02")
    assert first is not None and second is not None and first is not second
    qtbot.waitUntil(lambda: first.bar.value() > 0 and second.bar.value() > 0,
                    timeout=TIMEOUT)
    assert not first.run.done and not second.run.done  # both in flight at once
    window.cancel_all()
    qtbot.waitUntil(lambda: first.run.done and second.run.done, timeout=TIMEOUT)
    assert first.run.error.status_name == second.run.error.status_name == "CANCELLED"


def test_bad_value_is_refused_before_sending(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    row = run_op(window, qtbot, "test.slow", steps="many")
    assert row is None  # nothing was sent
    text = window.operations.error.text()
    assert "steps" in text and "'many' is not an integer" in text
    assert window.operations.form().fields["steps"].widget.property("invalid") is True


def test_failed_operation_shows_status_and_message(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    row = run_op(window, qtbot, "test.fail", message="disk on fire")
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    assert "FAILED" in window.result.title.text()
    assert "disk on fire" in window.result.text.toPlainText()
    assert any("disk on fire" in t for t in window.log.texts()[:2])


def test_unauthorized_operation_is_clearly_refused(window, qtbot, strict_testsvc):
    connect(window, qtbot, strict_testsvc)
    row = run_op(window, qtbot, "test.privileged", note="let me in")
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    assert row.run.error.status_name == "REJECTED_UNAUTHORIZED"
    assert "REJECTED_UNAUTHORIZED" in window.result.title.text()
    assert "Not authorized" in window.result.text.toPlainText()
    assert "privileged" in window.operations.title.text()
    # The session survives a refusal: the next call works.
    row = run_op(window, qtbot, "test.whoami")
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    assert row.run.error is None


def test_survives_service_kill_and_restart(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    old_pid = window.info.pid
    row = run_op(window, qtbot, "test.slow", steps="5000", delay="0.05")
    qtbot.waitUntil(lambda: row.bar.value() > 0, timeout=TIMEOUT)
    testsvc.kill()
    qtbot.waitUntil(lambda: window.link.state == "lost", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    # In flight when the service died: unknown outcome, never success.
    assert row.run.error is not None
    assert ("OUTCOME UNKNOWN" in window.result.title.text()
            or "SERVICE RESTARTED" in window.result.title.text())
    assert "not retried" in window.result.text.toPlainText()
    assert "stopped answering" in window.handshake.summary.text()
    assert not window.operations.run_button.isEnabled()

    restarted = start_service("aether_testsvc:service", testsvc.socket_path)
    try:
        qtbot.waitUntil(lambda: window.link.state == "connected" and window.info.pid
                        == restarted.pid, timeout=TIMEOUT)
        assert restarted.pid != old_pid
        assert any(f"restarted: pid {old_pid} -> {restarted.pid}" in t
                   for t in window.log.texts())
        assert S.READY in window.handshake.step_names  # the new handshake, shown again
        row = run_op(window, qtbot, "test.slow", steps="3", delay="0.01")
        qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
        assert row.run.error is None and row.run.result == 3
    finally:
        restarted.kill()


def test_connect_failure_names_the_problem_then_connects_when_it_starts(window, qtbot,
                                                                        runtime_dir):
    path = runtime_dir / "later.ctl"
    window.open_service(str(path))
    qtbot.waitUntil(lambda: window.link.state == "failed", timeout=TIMEOUT)
    assert "Connection failed" in window.handshake.summary.text()
    assert "later" in window.handshake.summary.text()
    svc = start_service("aether_testsvc:service", path)
    try:
        qtbot.waitUntil(lambda: window.link.state == "connected", timeout=TIMEOUT)
        assert window.info.pid == svc.pid
    finally:
        svc.kill()


def test_keyboard_shortcut_runs_the_form(window, qtbot, testsvc):
    connect(window, qtbot, testsvc)
    window.operations.select("test.slow")
    fill(qtbot, window.operations.form().fields["steps"], "3")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=TIMEOUT)
    qtbot.keyClick(window.operations.form().fields["steps"].edit, Qt.Key.Key_Return,
                   Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: bool(window.running.rows), timeout=TIMEOUT)
    row = window.running.rows[0]
    qtbot.waitUntil(lambda: row.run.done, timeout=TIMEOUT)
    assert row.run.result == 3
    # Every control the tests use has an accessible name.
    for widget in (window.operations.run_button, window.services.connect_button,
                   window.result.copy_button, row.cancel_button, row.bar):
        assert widget.accessibleName()
