"""The window's panes: services, the handshake, running operations, the log."""

from __future__ import annotations

import html
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aether.client import steps as S

from . import tasks
from .results import error_text
from .session import Connected, RunningOperation

OK_COLOR = QColor("#2e9d4f")
BAD_COLOR = QColor("#d9534f")
WARN_COLOR = QColor("#d18b00")

# The seed's steps, in the words of the connection panel (step numbers as in
# DESIGN.md: H1 allocate and fill, H2 HELLO, H4 pid and addresses, H6/H7 the
# service's pattern test, H8 the client's check of the zeros).
STEP_TITLES = {
    S.CONNECTED: "Connected to the control socket",
    S.SERVICE_VERIFIED: "Service identity verified (SO_PEERCRED, socket directory)",
    S.HELLO: "HELLO: protocol version and schema fingerprint",
    S.PTRACER_SET: "Yama: service allowed to read this process",
    S.BLOCKS_ALLOCATED: "Blocks allocated (private, anonymous, never executable)",
    S.PATTERN_WRITTEN: "Pattern 0x1337D00D written to both blocks",
    S.PID_SENT: "CLIENT_PID sent",
    S.ADDRESSES_SENT: "ADDR_PARAM and ADDR_RETN sent",
    S.SERVICE_READ_PATTERN: "Service verified the pattern and wrote zeros",
    S.ZEROS_VERIFIED: "Client verified the zeros (TEST_VERIFIED)",
    S.SOCKET_MODE: "Falling back to the socket transport",
    S.MAPPING_MODE: "Mapping transport (rings in a sealed memfd)",
    S.READY: "Session ready",
}


def human_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


class ServicesPanel(QWidget):
    """Every control socket visible, with its status; double-click connects."""

    open_requested = Signal(str)  # socket path

    COLUMNS = ["service", "scope", "state", "version", "pid", "uptime", "sessions", "socket"]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        title = QLabel("<b>Services</b>")
        head.addWidget(title, 1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Look for services and ask each its status (F5)")
        self.refresh_button.setAccessibleName("Refresh services")
        self.refresh_button.clicked.connect(self.refresh)
        self.connect_button = QPushButton("Connect")
        self.connect_button.setToolTip("Connect to the selected service (Ctrl+O)")
        self.connect_button.setAccessibleName("Connect to the selected service")
        self.connect_button.clicked.connect(self._open_selected)
        head.addWidget(self.refresh_button)
        head.addWidget(self.connect_button)
        layout.addLayout(head)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(self.COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAccessibleName("Services")
        self.tree.setAlternatingRowColors(True)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self._open(item))
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        layout.addWidget(self.tree, 1)
        self.rows: dict[str, dict[str, Any]] = {}
        self._busy = False
        self.refreshes = 0
        self.timer = QTimer(self)
        self.timer.setInterval(5000)
        self.timer.timeout.connect(self.refresh)

    def start(self) -> None:
        self.refresh()
        self.timer.start()

    def refresh(self) -> None:
        if self._busy:
            return
        self._busy = True
        tasks.submit(_probe_services, self._on_rows, self._on_failed)

    def _on_failed(self, exc: BaseException) -> None:
        self._busy = False

    def _on_rows(self, rows: list[dict[str, Any]]) -> None:
        self._busy = False
        self.refreshes += 1
        selected = self.selected_path()
        self.tree.clear()
        self.rows = {r["socket"]: r for r in rows}
        for r in rows:
            running = r["running"]
            item = QTreeWidgetItem([
                r["name"], r["scope"], "running" if running else "not answering",
                r.get("version", ""), str(r.get("pid", "")),
                human_duration(r["uptime_s"]) if "uptime_s" in r else "",
                str(r.get("sessions", "")), r["socket"]])
            item.setData(0, Qt.ItemDataRole.UserRole, r["socket"])
            item.setForeground(2, OK_COLOR if running else BAD_COLOR)
            if not running:
                item.setToolTip(2, r.get("error", ""))
            self.tree.addTopLevelItem(item)
            if r["socket"] == selected:
                item.setSelected(True)
                self.tree.setCurrentItem(item)
        if self.tree.currentItem() is None and self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(0))

    def selected_path(self) -> str | None:
        item = self.tree.currentItem()
        return None if item is None else str(item.data(0, Qt.ItemDataRole.UserRole))

    def _open_selected(self) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self._open(item)

    def _open(self, item: QTreeWidgetItem) -> None:
        self.open_requested.emit(str(item.data(0, Qt.ItemDataRole.UserRole)))


def _probe_services() -> list[dict[str, Any]]:
    """(worker thread) ``aether list``, as data."""
    from aether.client import Client, visible_services
    from aether.errors import AetherError

    rows: list[dict[str, Any]] = []
    for addr in visible_services():
        row: dict[str, Any] = {"name": addr.name, "scope": addr.scope, "socket": str(addr.path)}
        try:
            with Client(addr.path, transport="socket", timeout=2.0) as client:
                st = client.status()
            row.update(running=True, version=st.version, pid=st.pid, uptime_s=st.uptime_s,
                       sessions=st.sessions)
        except AetherError as exc:
            row.update(running=False, error=str(exc))
        rows.append(row)
    return rows


class HandshakePanel(QWidget):
    """The seed's handshake, step by step, as it happens."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Connection</b>"))
        self.summary = QLabel("Not connected. Pick a service and press Connect.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAccessibleName("Connection summary")
        layout.addWidget(self.summary)
        # Rich text rather than a table: the details are long and must wrap.
        self.steps = QTextBrowser()
        self.steps.setAccessibleName("Handshake steps")
        self.steps.setOpenLinks(False)
        layout.addWidget(self.steps, 1)
        self.transport = QLabel("")
        self.transport.setWordWrap(True)
        self.transport.setAccessibleName("Transport in use")
        layout.addWidget(self.transport)
        self.step_names: list[str] = []
        self.entries: list[str] = []

    def begin(self, target: str) -> None:
        self.steps.clear()
        self.step_names = []
        self.entries = []
        self.transport.setText("")
        self.summary.setText(f"Connecting to {html.escape(target)}…")

    def _append(self, mark: str, color: QColor, title: str, detail: str, when: str) -> None:
        entry = (f"<p style='margin:0 0 6px 0'><span style='color:{color.name()}'>{mark}</span> "
                 f"<b>{html.escape(title)}</b> <span style='color:gray'>{when}</span><br>"
                 f"<span style='color:gray'>{html.escape(detail)}</span></p>")
        self.entries.append(entry)
        self.steps.append(entry)

    def add_step(self, step: str, text: str, ms: float) -> None:
        self.step_names.append(step)
        color = WARN_COLOR if "refused" in text else OK_COLOR
        self._append("✓", color, STEP_TITLES.get(step, step), text, f"{ms:.1f} ms")

    def connected(self, info: Connected) -> None:
        self.summary.setText(
            f"<b>{html.escape(info.service)}</b> {html.escape(info.version)} at "
            f"{html.escape(str(info.address.path))}<br>"
            f"pid {info.pid} · protocol {info.protocol} · schema {info.fingerprint:016x}")
        self.transport.setText(transport_explanation(info))

    def failed(self, exc: BaseException) -> None:
        from aether.errors import HandshakeError

        if isinstance(exc, HandshakeError):
            where = f"step {exc.step}"
            why = exc.reason + (f": {exc.detail}" if exc.detail else "")
        else:
            where = "connect"
            why = str(exc)
        self.step_names.append(S.FAILED)
        self._append("✗", BAD_COLOR, f"Failed at {where}", why, "")
        self.summary.setText(f"<span style='color:#d9534f'><b>Connection failed</b> at "
                             f"{where}: {html.escape(why)}</span>")

    def lost(self, why: str) -> None:
        self.summary.setText(f"<span style='color:#d9534f'><b>Service stopped answering</b>"
                             f"</span> ({html.escape(why)}). Reconnecting…")

    def disconnected(self) -> None:
        self.summary.setText("Disconnected.")
        self.transport.setText("")


def transport_explanation(info: Connected) -> str:
    if info.transport == "memory":
        return ("<b>Transport: memory</b> (the seed's): parameters and results travel "
                "through this process's two blocks, which the service reads and writes "
                "via /proc/pid/mem; the socket carries only 24-byte control messages.")
    if info.transport == "mapping":
        why = (f" (fallback: {html.escape(info.fallback_reason)})" if info.fallback_reason
               else " (as asked)")
        return (f"<b>Transport: mapping</b>{why}: two rings in a sealed memfd that the "
                "service passed over the socket (SCM_RIGHTS), woken through eventfds; no "
                "cross-process memory access.")
    if info.fallback_reason:
        return (f"<b>Transport: socket</b> (fallback): {html.escape(info.fallback_reason)}. "
                "Payloads travel inside the control socket's messages.")
    return ("<b>Transport: socket</b> (as asked): payloads travel inside the control "
            "socket's messages.")


class OperationRow(QFrame):
    """One running (or finished) operation: progress, message, elapsed, cancel."""

    selected = Signal(object)

    def __init__(self, run: RunningOperation, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = run
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(f"Operation {run.name}")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 3, 6, 3)
        self.name = QLabel(f"<b>{html.escape(run.name)}</b>")
        self.name.setMinimumWidth(150)
        layout.addWidget(self.name)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.bar.setAccessibleName(f"{run.name} progress")
        self.bar.setMinimumWidth(120)
        layout.addWidget(self.bar, 3)
        self.message = QLabel("starting…")
        self.message.setTextFormat(Qt.TextFormat.PlainText)  # the service's words
        self.message.setMinimumWidth(120)
        self.message.setAccessibleName(f"{run.name} message")
        layout.addWidget(self.message, 3)
        self.elapsed = QLabel("0.0 s")
        self.elapsed.setMinimumWidth(56)
        self.elapsed.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.elapsed.setAccessibleName(f"{run.name} elapsed time")
        layout.addWidget(self.elapsed)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Ask the service to cancel this operation")
        self.cancel_button.setAccessibleName(f"Cancel {run.name}")
        self.cancel_button.clicked.connect(self._cancel)
        layout.addWidget(self.cancel_button)
        self.show_button = QPushButton("Show")
        self.show_button.setToolTip("Show this operation's result")
        self.show_button.setAccessibleName(f"Show the result of {run.name}")
        self.show_button.setEnabled(False)
        self.show_button.clicked.connect(lambda: self.selected.emit(self.run))
        layout.addWidget(self.show_button)
        run.progress.connect(self._progress)
        run.finished.connect(self._finished)

    def _cancel(self) -> None:
        self.run.cancel()
        self.cancel_button.setEnabled(False)
        self.message.setText("cancelling…")

    def _progress(self, permille: int, text: str) -> None:
        self.bar.setValue(permille)
        if text:
            self.message.setText(text)

    def tick(self) -> None:
        self.elapsed.setText(human_duration(self.run.elapsed))

    def _finished(self, result: Any, error: BaseException | None) -> None:
        self.tick()
        self.cancel_button.setEnabled(False)
        self.show_button.setEnabled(True)
        if error is None:
            self.bar.setValue(1000)
            self.message.setText("done")
            self.message.setStyleSheet(f"color: {OK_COLOR.name()};")
        else:
            status, message = error_text(error)
            self.message.setText(status.lower().replace("_", " "))
            self.message.setToolTip(message)
            self.message.setStyleSheet(f"color: {BAD_COLOR.name()};")


class RunningPanel(QWidget):
    """Operations started from this window, newest first."""

    show_requested = Signal(object)
    MAX_ROWS = 50

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Running operations</b>"), 1)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setAccessibleName("Clear finished operations")
        self.clear_button.clicked.connect(self.clear_finished)
        head.addWidget(self.clear_button)
        outer.addLayout(head)
        self.area = QScrollArea()
        self.area.setWidgetResizable(True)
        inner = QWidget()
        self.column = QVBoxLayout(inner)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.column.setSpacing(2)
        self.empty = QLabel("Nothing running. Pick an operation, fill its form, press Run "
                            "(Ctrl+Enter).")
        self.empty.setEnabled(False)
        self.column.addWidget(self.empty)
        self.column.addStretch(1)
        self.area.setWidget(inner)
        outer.addWidget(self.area, 1)
        self.rows: list[OperationRow] = []
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def add(self, run: RunningOperation) -> OperationRow:
        row = OperationRow(run)
        row.selected.connect(self.show_requested)
        self.rows.insert(0, row)
        self.column.insertWidget(0, row)
        self.empty.hide()
        while len(self.rows) > self.MAX_ROWS:
            old = self.rows.pop()
            old.deleteLater()
        return row

    def running(self) -> list[RunningOperation]:
        return [row.run for row in self.rows if not row.run.done]

    def clear_finished(self) -> None:
        for row in [r for r in self.rows if r.run.done]:
            self.rows.remove(row)
            row.deleteLater()
        if not self.rows:
            self.empty.show()

    def _tick(self) -> None:
        for row in self.rows:
            if not row.run.done:
                row.tick()


class LogPanel(QListWidget):
    """What happened, newest first."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Log")
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        font = QFont("DejaVu Sans Mono")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)

    def add(self, level: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        item = QListWidgetItem(f"{stamp}  {level:<7}  {text}")
        item.setToolTip(text)
        if level == "error":
            item.setForeground(BAD_COLOR)
        elif level == "warning":
            item.setForeground(WARN_COLOR)
        self.insertItem(0, item)
        while self.count() > 2000:
            self.takeItem(self.count() - 1)

    def texts(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]
