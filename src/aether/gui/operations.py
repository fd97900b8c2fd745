"""The operations pane: every operation the service describes, and the
generated form of the selected one."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from . import icons
from .forms import FormErrors, OperationForm
from .session import OperationSpec

PRIVILEGED_BADGE = ("<span style='background:#d18b00; color:white; border-radius:3px'>"
                    "&nbsp;privileged&nbsp;</span>")


class OperationsPanel(QWidget):
    run_requested = Signal(str, dict)  # operation name, validated parameters

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.specs: dict[str, OperationSpec] = {}
        self.forms: dict[str, OperationForm] = {}
        self.current: str | None = None
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_col = QVBoxLayout(left)
        left_col.setContentsMargins(0, 0, 0, 0)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter operations (Ctrl+F)")
        self.filter.setAccessibleName("Filter operations")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        left_col.addWidget(self.filter)
        self.list = QListWidget()
        self.list.setAccessibleName("Operations")
        self.list.setIconSize(QSize(14, 14))
        self.list.currentItemChanged.connect(self._selected)
        left_col.addWidget(self.list, 1)
        split.addWidget(left)

        right = QWidget()
        col = QVBoxLayout(right)
        col.setContentsMargins(6, 0, 0, 0)
        self.title = QLabel("Connect to a service to see its operations.")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        col.addWidget(self.title)
        self.doc = QLabel("")
        self.doc.setTextFormat(Qt.TextFormat.PlainText)  # the service's text, never markup
        self.doc.setWordWrap(True)
        self.doc.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.doc)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setAccessibleName("Parameters")
        col.addWidget(self.scroll, 1)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d9534f;")
        self.error.setAccessibleName("Form errors")
        col.addWidget(self.error)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Put the schema's defaults back in the form")
        self.reset_button.setAccessibleName("Reset the form to its defaults")
        self.reset_button.clicked.connect(self.reset_form)
        buttons.addWidget(self.reset_button)
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Validate the form and run the operation (Ctrl+Enter)")
        self.run_button.setAccessibleName("Run the operation")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run)
        buttons.addWidget(self.run_button)
        col.addLayout(buttons)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([220, 600])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        self.run_button.setEnabled(enabled and self.current is not None)
        self.reset_button.setEnabled(enabled and self.current is not None)

    def set_operations(self, specs: list[OperationSpec]) -> None:
        keep = self.current
        new = {s.name: s for s in specs}
        if new.keys() != self.specs.keys() or any(
                new[n].params_schema != self.specs[n].params_schema for n in new):
            self.forms.clear()
        self.specs = new
        self.list.clear()
        lock = icons.lock_icon()
        for spec in specs:
            item = QListWidgetItem(spec.name)
            item.setData(Qt.ItemDataRole.UserRole, spec.name)
            if spec.privileged:
                item.setIcon(lock)
                item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{spec.name} (privileged)")
            tip = html.escape(spec.summary or spec.name)
            if spec.privileged:
                tip += "<br><i>Privileged: only callers the service's policy allows.</i>"
            item.setToolTip(tip)
            self.list.addItem(item)
        self._apply_filter(self.filter.text())
        self.select(keep if keep in new else (specs[0].name if specs else None))
        self.set_enabled(True)

    def select(self, name: str | None) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentItem(item)
                return

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def _selected(self, item: QListWidgetItem | None, _prev: Any = None) -> None:
        if item is None:
            return
        name = str(item.data(Qt.ItemDataRole.UserRole))
        spec = self.specs[name]
        self.current = name
        badge = " " + PRIVILEGED_BADGE if spec.privileged else ""
        self.title.setText(f"<b style='font-size:14pt'>{html.escape(name)}</b>"
                           f" <span style='color:gray'>0x{spec.code:04x}</span>{badge}")
        doc = self._doc(spec)
        self.doc.setText(doc)
        self.doc.setVisible(bool(doc))
        form = self.forms.get(name)
        if form is None:
            form = OperationForm(spec.params_schema)
            form.setObjectName(f"form:{name}")
            self.forms[name] = form
        old = self.scroll.takeWidget()
        if old is not None and old is not form:
            old.setParent(None)  # the form is kept in self.forms; only detached
        self.scroll.setWidget(form)
        self.error.setText("")
        self.set_enabled(True)

    @staticmethod
    def _doc(spec: OperationSpec) -> str:
        root = spec.params_schema
        defs = root.get("$defs", {})
        ref = root.get("$ref", "")
        body = defs.get(ref.rsplit("/", 1)[-1], root)
        text = body.get("description") or spec.summary or ""
        if spec.privileged:
            text += ("\nPrivileged: the service runs it only for the users and groups "
                     "its policy names.")
        return text.strip()

    def form(self) -> OperationForm | None:
        return None if self.current is None else self.forms.get(self.current)

    def reset_form(self) -> None:
        if self.current is None:
            return
        self.forms.pop(self.current, None)
        item = self.list.currentItem()
        self._selected(item)

    def run(self) -> None:
        form = self.form()
        if form is None or self.current is None:
            return
        try:
            values = form.values()
        except FormErrors as exc:
            self.error.setText("Not sent: " + "; ".join(str(e) for e in exc.errors))
            return
        self.error.setText("")
        self.run_requested.emit(self.current, values)
