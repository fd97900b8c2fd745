"""Showing a result: a table for a list of records, a tree for nested data,
text for a scalar; copy and export as JSON."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aether.errors import (
    AuthorizationError,
    OperationError,
    OutcomeUnknownError,
    ServiceRestartedError,
)


def to_json(value: Any) -> str:
    """Results as JSON text (bytes as base64, like ``aether call --json``)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, bytes):
            return base64.b64encode(obj).decode()
        raise TypeError(f"{type(obj).__name__} is not JSON")

    return json.dumps(value, indent=2, default=default, ensure_ascii=False)


def cell_text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if value is None:
        return ""
    return str(value)


def is_table(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(row, dict) for row in value))


def error_text(exc: BaseException) -> tuple[str, str]:
    """(status, message) for an operation's failure, worded for a person."""
    if isinstance(exc, AuthorizationError):
        return exc.status_name, ("Not authorized: the service's policy does not allow your "
                                 f"user to call this privileged operation. {exc.message}").strip()
    if isinstance(exc, ServiceRestartedError):
        return "SERVICE RESTARTED", (f"{exc.message}. The service stopped or restarted while "
                                     "the operation ran: it may or may not have taken effect; "
                                     "it was not retried.")
    if isinstance(exc, OutcomeUnknownError):
        return "OUTCOME UNKNOWN", (f"{exc.message}. The operation may or may not have taken "
                                   "effect; it was not retried.")
    if isinstance(exc, OperationError):
        return exc.status_name, exc.message or str(exc)
    return type(exc).__name__, str(exc)


class ResultView(QWidget):
    """The last selected operation's outcome."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.value: Any = None
        self.has_value = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        head = QHBoxLayout()
        self.title = QLabel("No result yet: run an operation.")
        self.title.setObjectName("resultTitle")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head.addWidget(self.title, 1)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the result as JSON (Ctrl+Shift+C)")
        self.copy_button.setAccessibleName("Copy result as JSON")
        self.copy_button.clicked.connect(self.copy)
        self.export_button = QPushButton("Export JSON…")
        self.export_button.setToolTip("Save the result as a JSON file (Ctrl+E)")
        self.export_button.setAccessibleName("Export result as JSON")
        self.export_button.clicked.connect(self.export_dialog)
        head.addWidget(self.copy_button)
        head.addWidget(self.export_button)
        layout.addLayout(head)
        self.stack = QStackedWidget()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setAccessibleName("Result text")
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["field", "value"])
        self.tree.setAccessibleName("Result tree")
        self.tree.setAlternatingRowColors(True)
        self.table = QTableWidget()
        self.table.setAccessibleName("Result table")
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for widget in (self.text, self.tree, self.table):
            self.stack.addWidget(widget)
        layout.addWidget(self.stack, 1)
        self._set_buttons(False)

    def _set_buttons(self, enabled: bool) -> None:
        self.copy_button.setEnabled(enabled)
        self.export_button.setEnabled(enabled)

    @property
    def mode(self) -> str:
        return {0: "text", 1: "tree", 2: "table"}[self.stack.currentIndex()]

    def show_result(self, title: str, value: Any) -> None:
        self.value = value
        self.has_value = True
        self.title.setText(html.escape(title))
        self.title.setStyleSheet("")
        self._set_buttons(True)
        if is_table(value):
            self._fill_table(value)
            self.stack.setCurrentWidget(self.table)
        elif isinstance(value, dict | list):
            self.tree.clear()
            self._fill_tree(self.tree.invisibleRootItem(), value)
            self.tree.expandToDepth(1)
            self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
            self.stack.setCurrentWidget(self.tree)
        else:
            self.text.setPlainText(cell_text(value) if value is not None else "(no value)")
            self.stack.setCurrentWidget(self.text)

    def show_error(self, title: str, exc: BaseException) -> None:
        status, message = error_text(exc)
        self.value = {"status": status, "message": message}
        self.has_value = True
        self.title.setText(f"{html.escape(title)}: <b>{html.escape(status)}</b>")
        self.title.setStyleSheet("color: #d9534f;")
        self.text.setPlainText(f"{status}\n\n{message}")
        self.stack.setCurrentWidget(self.text)
        self._set_buttons(True)

    def _fill_table(self, rows: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(columns)
        for r, row in enumerate(rows):
            for c, key in enumerate(columns):
                self.table.setItem(r, c, QTableWidgetItem(cell_text(row.get(key))))
        self.table.resizeColumnsToContents()

    def _fill_tree(self, parent: QTreeWidgetItem, value: Any) -> None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            node = QTreeWidgetItem(parent, [str(key)])
            if isinstance(item, dict | list):
                node.setText(1, f"{len(item)} {'fields' if isinstance(item, dict) else 'items'}")
                self._fill_tree(node, item)
            else:
                node.setText(1, cell_text(item))

    def as_json(self) -> str:
        return to_json(self.value)

    def copy(self) -> None:
        if self.has_value:
            QGuiApplication.clipboard().setText(self.as_json())

    def export(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.as_json() + "\n")

    def export_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        if not self.has_value:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export result", "result.json",
                                              "JSON (*.json)")
        if path:
            self.export(path)
