"""Aether Guard's face: dashboard, report viewer, quarantine vault, live events.

Shown as a "Guard" tab when the connected service offers ``guard.status``.
It uses the same generic, schema-less client as the rest of the panel (the
results arrive as plain data shaped by ``aether_guard.schema``), and the
window's own machinery to run operations: everything off the GUI thread.
"""

from __future__ import annotations

import html
import json
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .panels import BAD_COLOR, OK_COLOR, WARN_COLOR, human_duration
from .session import Connected, Link, RunningOperation

if TYPE_CHECKING:
    from .window import MainWindow

KINDS = ("added", "removed", "changed", "problem")
KIND_COLORS = {"added": OK_COLOR, "removed": BAD_COLOR, "changed": WARN_COLOR,
               "problem": BAD_COLOR}
STATUS_INTERVAL_MS = 3000


def format_mode(mode: int) -> str:
    return f"{stat.filemode(mode)} ({mode & 0o7777:04o})"


def format_value(name: str, value: Any) -> str:
    """An attribute value as a person reads it (the full value is the tooltip)."""
    if value is None:
        return "—"
    if name == "mode" and isinstance(value, int):
        return format_mode(value)
    if name in ("sha256", "blake2b") and isinstance(value, str):
        return value[:16] + "…"
    if name in ("mtime", "ctime") and isinstance(value, int):
        return (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value / 1e9))
                + f".{value % 10**9 // 1000:06d}")
    return str(value)


def _ago(when: float | None) -> str:
    if not when:
        return "never"
    return human_duration(time.time() - when) + " ago"


def _item(text: str, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if tip:
        item.setToolTip(tip)
    return item


def _table(columns: list[str], name: str) -> QTableWidget:
    """A read-only table with compact single-line rows."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setAccessibleName(name)
    table.setAlternatingRowColors(True)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
    table.setWordWrap(False)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class GuardView(QWidget):
    """The Guard tab."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.link: Link | None = None
        self.status: dict[str, Any] = {}
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Guard views")
        self.dashboard = Dashboard(self)
        self.report = ReportView(self)
        self.vault = VaultView(self)
        self.events = EventsView(self)
        self.tabs.addTab(self.dashboard, "Dashboard")
        self.tabs.addTab(self.report, "Report")
        self.tabs.addTab(self.vault, "Quarantine")
        self.tabs.addTab(self.events, "Live events")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.timer = QTimer(self)
        self.timer.setInterval(STATUS_INTERVAL_MS)
        self.timer.timeout.connect(self.refresh_status)
        self._status_busy = False
        self.status_updates = 0

    def attach(self, link: Link, info: Connected) -> None:
        self.link = link
        self.timer.start()
        self.refresh_all()

    def display_path(self, path: str) -> str:
        """A path shortened to its policy tree's name and the rest (full path in tooltips)."""
        best = ""
        for rule in self.status.get("paths", []):
            root = rule["path"].rstrip("/")
            if (path == root or path.startswith(root + "/")) and len(root) > len(best):
                best = root
        if not best:
            return path
        return os.path.basename(best) + path[len(best):]

    def detach(self) -> None:
        """Stop polling and end the live-events subscription."""
        self.timer.stop()
        if self.events.watching:
            assert self.events.run is not None
            self.events.run.cancel()

    def refresh_all(self) -> None:
        self.refresh_status()
        self.report.refresh_reports()
        self.vault.refresh()

    # -- calls -----------------------------------------------------------------------
    def query(self, name: str, params: dict[str, Any], done: Any,
              failed: Any = None) -> RunningOperation | None:
        """A background call that does not show in the operations list."""
        link = self.window_.link
        if link is None or link.state != "connected":
            return None
        run = RunningOperation(link, name, params, parent=self)

        def finished(result: Any, error: BaseException | None) -> None:
            if error is None:
                done(result)
            else:
                if failed is not None:
                    failed(error)
                self.window_.log.add("error", f"{name}: {error}")
            run.deleteLater()

        run.finished.connect(finished)
        run.start()
        return run

    def action(self, name: str, params: dict[str, Any]) -> RunningOperation | None:
        """A user's action: shown with progress and result, then everything refreshed."""
        run = self.window_.run_operation(name, params)
        if run is not None:
            run.finished.connect(lambda _r, _e: self.refresh_all())
        return run

    def refresh_status(self) -> None:
        if self._status_busy:
            return

        def done(st: dict[str, Any]) -> None:
            self._status_busy = False
            self.status = st
            self.status_updates += 1
            self.dashboard.show_status(st)
            self._tray_state(st)

        def failed(_e: BaseException) -> None:
            self._status_busy = False

        self._status_busy = self.query("guard.status", {}, done, failed) is not None

    def _tray_state(self, st: dict[str, Any]) -> None:
        last = st.get("last_report")
        if st.get("baseline") is None:
            self.window_.set_guard_state("alert", "Guard: no baseline yet")
        elif last and (last["added"] + last["removed"] + last["changed"]) > last["accepted"]:
            pending = last["added"] + last["removed"] + last["changed"] - last["accepted"]
            self.window_.set_guard_state(
                "alert", f"Guard: {pending} change(s) in report #{last['report_id']}")
        else:
            self.window_.set_guard_state("connected", "Guard: no unaccepted changes")


class Dashboard(QWidget):
    def __init__(self, guard: GuardView) -> None:
        super().__init__(guard)
        self.guard = guard
        grid = QGridLayout(self)
        self.baseline = self._card("Baseline", grid, 0, 0)
        self.last_check = self._card("Last check", grid, 0, 1)
        self.policy = self._card("Policy", grid, 1, 0)
        self.service = self._card("Service", grid, 1, 1)
        self.counts: dict[str, QLabel] = {}
        counts_box = QGroupBox("Findings of the last check")
        counts = QHBoxLayout(counts_box)
        for kind in KINDS:
            label = QLabel("-")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setAccessibleName(f"{kind} count")
            label.setMinimumWidth(90)
            counts.addWidget(label)
            self.counts[kind] = label
        grid.addWidget(counts_box, 2, 0, 1, 2)
        buttons = QHBoxLayout()
        self.baseline_button = QPushButton("Take baseline")
        self.baseline_button.setToolTip("guard.baseline (privileged): record every file's "
                                        "attributes as the new reference")
        self.baseline_button.setAccessibleName("Take a new baseline")
        self.baseline_button.clicked.connect(lambda: guard.action("guard.baseline", {}))
        self.check_button = QPushButton("Run check")
        self.check_button.setToolTip("guard.check: compare the file system with the baseline")
        self.check_button.setAccessibleName("Run a check")
        self.check_button.clicked.connect(lambda: guard.action("guard.check", {}))
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setAccessibleName("Refresh the Guard views")
        self.refresh_button.clicked.connect(guard.refresh_all)
        buttons.addWidget(self.baseline_button)
        buttons.addWidget(self.check_button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        grid.addLayout(buttons, 3, 0, 1, 2)
        grid.setRowStretch(4, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)

    @staticmethod
    def _card(title: str, grid: QGridLayout, row: int, col: int) -> QLabel:
        box = QGroupBox(title)
        inner = QVBoxLayout(box)
        label = QLabel("…")
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setAccessibleName(title)
        label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        inner.addWidget(label)
        grid.addWidget(box, row, col)
        return label

    def show_status(self, st: dict[str, Any]) -> None:
        b = st.get("baseline")
        if b:
            self.baseline.setText(
                f"<span style='font-size:15pt'><b>{human_duration(b['age_s'])}</b> old</span>"
                f"<br>baseline #{b['baseline_id']}: {b['files']:,} entries, "
                f"{b['bytes'] / 1e6:,.1f} MB hashed"
                + (f", {b['problems']} unreadable" if b.get("problems") else ""))
        else:
            self.baseline.setText("<span style='font-size:15pt; color:#d18b00'><b>No baseline"
                                  "</b></span><br>Take one to start monitoring.")
        r = st.get("last_report")
        if r:
            self.last_check.setText(
                f"<span style='font-size:15pt'><b>{_ago(r['created'])}</b></span><br>"
                f"report #{r['report_id']} ({html.escape(str(r['trigger']))}): "
                f"{r['files_checked']:,} entries in {r['elapsed_s']:.2f} s; "
                f"{r['accepted']} accepted")
        else:
            self.last_check.setText("<span style='font-size:15pt'><b>never</b></span>")
        for kind in KINDS:
            n = r[kind if kind != "problem" else "problems"] if r else None
            color = KIND_COLORS[kind].name() if n else "gray"
            self.counts[kind].setText(
                f"<span style='font-size:20pt; color:{color}'><b>{'-' if n is None else n}"
                f"</b></span><br>{kind if kind != 'problem' else 'problems'}")
        paths = "".join(f"<li>{html.escape(p['path'])}"
                        + (f" <span style='color:gray'>(excluding "
                           f"{html.escape(', '.join(p['exclude']))})</span>"
                           if p.get("exclude") else "") + "</li>"
                        for p in st.get("paths", []))
        sched = st.get("schedule_s")
        self.policy.setText(
            f"{html.escape(st.get('policy_file', ''))}<ul style='margin:2px'>{paths}</ul>"
            + (f"checked every {human_duration(sched)}" if sched else "no schedule"))
        running = st.get("running") or []
        self.service.setText(
            f"{st.get('vault_entries', 0)} file(s) in quarantine · {st.get('watchers', 0)} "
            f"watcher(s) · {st.get('hash_workers', 0)} hash workers<br>"
            f"database {st.get('database_bytes', 0) / 1024:,.0f} KiB<br>"
            + ("running: " + html.escape(", ".join(running)) if running else "idle"))


class ReportView(QWidget):
    """A stored report's findings: filter, accept, quarantine."""

    COLUMNS = ["path", "kind", "type", "attribute", "baseline", "now"]

    def __init__(self, guard: GuardView) -> None:
        super().__init__(guard)
        self.guard = guard
        self.report_id = 0
        self.changes: list[dict[str, Any]] = []
        self.row_paths: list[str] = []
        self.row_kinds: list[str] = []
        self.loading = False
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Report"))
        self.picker = QComboBox()
        self.picker.setAccessibleName("Report")
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.picker.activated.connect(lambda _i: self.load(self.picker.currentData()))
        top.addWidget(self.picker)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by path")
        self.filter.setAccessibleName("Filter findings by path")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(lambda _t: self.apply_filter())
        self.filter.setMinimumWidth(180)
        top.addWidget(self.filter, 1)
        self.kind_boxes: dict[str, QCheckBox] = {}
        for kind in KINDS:
            box = QCheckBox(kind)
            box.setChecked(True)
            box.setAccessibleName(f"Show {kind}")
            box.toggled.connect(lambda _c: self.apply_filter())
            top.addWidget(box)
            self.kind_boxes[kind] = box
        layout.addLayout(top)
        self.summary = QLabel("No report loaded.")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.table = _table(self.COLUMNS, "Findings")
        self.table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Interactive)
        layout.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        self.accept_selected = QPushButton("Accept selected")
        self.accept_selected.setToolTip("guard.accept (privileged): write the selected "
                                        "changes into the baseline")
        self.accept_selected.setAccessibleName("Accept the selected changes")
        self.accept_selected.clicked.connect(lambda: self.accept(self.selected_paths()))
        self.accept_all = QPushButton("Accept all")
        self.accept_all.setAccessibleName("Accept every change of the report")
        self.accept_all.clicked.connect(lambda: self.accept([]))
        self.quarantine_button = QPushButton("Quarantine selected")
        self.quarantine_button.setToolTip("guard.quarantine (privileged): move the selected "
                                          "file into the root-only vault")
        self.quarantine_button.setAccessibleName("Quarantine the selected file")
        self.quarantine_button.clicked.connect(self.quarantine)
        buttons.addWidget(self.accept_selected)
        buttons.addWidget(self.accept_all)
        buttons.addStretch(1)
        buttons.addWidget(self.quarantine_button)
        layout.addLayout(buttons)

    def refresh_reports(self) -> None:
        self.guard.query("guard.reports", {"limit": 50}, self._on_reports)

    def _on_reports(self, result: dict[str, Any]) -> None:
        reports = result.get("reports", [])
        keep = self.report_id
        self.picker.clear()
        for r in reports:
            stamp = time.strftime("%H:%M:%S", time.localtime(r["created"]))
            self.picker.addItem(
                f"#{r['report_id']} · {stamp} · {r['added']} added, "
                f"{r['removed']} removed, {r['changed']} changed · {r['accepted']} accepted",
                r["report_id"])
        if not reports:
            return
        ids = [r["report_id"] for r in reports]
        target = keep if keep in ids else ids[0]
        self.picker.setCurrentIndex(ids.index(target))
        self.load(target)

    def load(self, report_id: int) -> None:
        self.report_id = report_id
        self.loading = True
        self._pages: list[dict[str, Any]] = []
        self._fetch(0)

    def _fetch(self, offset: int) -> None:
        report_id = self.report_id
        self.guard.query("guard.report", {"report_id": report_id, "offset": offset,
                                          "limit": 2000},
                         lambda page: self._on_page(report_id, page),
                         lambda _e: setattr(self, "loading", False))

    def _on_page(self, report_id: int, page: dict[str, Any]) -> None:
        if report_id != self.report_id:
            return
        self._pages.append(page)
        if page.get("next_offset") is not None and len(self._pages) < 50:
            self._fetch(page["next_offset"])
            return
        self.changes = [c for p in self._pages for c in p["changes"]]
        info = page["report"]
        self.summary.setText(
            f"Report #{info['report_id']} against baseline #{info['baseline_id']}: "
            f"{info['files_checked']:,} entries checked, {info['added']} added, "
            f"{info['removed']} removed, {info['changed']} changed, {info['problems']} "
            f"problems; {info['accepted']} accepted. Select rows to accept or quarantine.")
        self._fill()
        self.loading = False

    def _fill(self) -> None:
        rows: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for change in self.changes:
            attrs = change.get("attributes") or []
            if attrs:
                rows.extend((change, a) for a in attrs)
            else:
                rows.append((change, None))
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        self.row_paths = []
        self.row_kinds = []
        for r, (change, attr) in enumerate(rows):
            path, kind = change["path"], change["kind"]
            self.row_paths.append(path)
            self.row_kinds.append(kind)
            accepted = change.get("accepted")
            path_item = _item(self.guard.display_path(path) + ("  ✓ accepted" if accepted
                                                                else ""), path)
            kind_item = _item(kind)
            kind_item.setForeground(KIND_COLORS[kind])
            cells = [path_item, kind_item, _item(change.get("type", ""))]
            if attr is not None:
                name = attr["name"]
                cells += [_item(name), _item(format_value(name, attr["old"]), str(attr["old"])),
                          _item(format_value(name, attr["new"]), str(attr["new"]))]
            else:
                cells += [_item(""), _item(""), _item(change.get("problem") or "",
                                                      change.get("problem") or "")]
            for c, cell in enumerate(cells):
                cell.setData(Qt.ItemDataRole.UserRole, path)
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()
        self.apply_filter()

    def apply_filter(self) -> None:
        needle = self.filter.text().strip().lower()
        shown = {k for k, box in self.kind_boxes.items() if box.isChecked()}
        for r, (path, kind) in enumerate(zip(self.row_paths, self.row_kinds, strict=True)):
            visible = kind in shown and (not needle or needle in path.lower())
            self.table.setRowHidden(r, not visible)

    def visible_rows(self) -> list[int]:
        return [r for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]

    def selected_paths(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        paths: list[str] = []
        for r in rows:
            if not self.table.isRowHidden(r) and self.row_paths[r] not in paths:
                paths.append(self.row_paths[r])
        return paths

    def accept(self, paths: list[str]) -> None:
        if not self.report_id:
            return
        if not paths and self.sender() is self.accept_selected:
            self.guard.window_.log.add("warning", "select the changes to accept first")
            return
        self.guard.action("guard.accept", {"report_id": self.report_id, "paths": paths})

    def quarantine(self) -> None:
        for path in self.selected_paths():
            self.guard.action("guard.quarantine", {"path": path})


class VaultView(QWidget):
    COLUMNS = ["id", "path", "size", "mode", "owner", "sha256", "quarantined", "restored"]

    def __init__(self, guard: GuardView) -> None:
        super().__init__(guard)
        self.guard = guard
        self.entries: list[dict[str, Any]] = []
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.include_restored = QCheckBox("Show restored files too")
        self.include_restored.setAccessibleName("Show restored files too")
        self.include_restored.toggled.connect(lambda _c: self.refresh())
        top.addWidget(self.include_restored)
        top.addStretch(1)
        self.path = QLineEdit()
        self.path.setPlaceholderText("/absolute/path/inside/the/policy")
        self.path.setAccessibleName("Path to quarantine")
        self.path.setMinimumWidth(300)
        top.addWidget(self.path, 1)
        self.quarantine_button = QPushButton("Quarantine")
        self.quarantine_button.setAccessibleName("Quarantine this path")
        self.quarantine_button.clicked.connect(self._quarantine)
        top.addWidget(self.quarantine_button)
        layout.addLayout(top)
        self.table = _table(self.COLUMNS, "Quarantine vault")
        layout.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.restore_button = QPushButton("Restore selected")
        self.restore_button.setToolTip("guard.restore (privileged): put the file back exactly "
                                       "(content, mode, owner, times)")
        self.restore_button.setAccessibleName("Restore the selected files")
        self.restore_button.clicked.connect(self.restore_selected)
        buttons.addWidget(self.restore_button)
        layout.addLayout(buttons)

    def refresh(self) -> None:
        self.guard.query("guard.vault", {"include_restored": self.include_restored.isChecked()},
                         self._on_vault)

    def _on_vault(self, result: dict[str, Any]) -> None:
        self.entries = result.get("entries", [])
        self.table.setRowCount(len(self.entries))
        for r, e in enumerate(self.entries):
            cells = [
                _item(str(e["entry_id"])), _item(self.guard.display_path(e["path"]), e["path"]),
                _item(f"{e['size']:,}"), _item(format_mode(e["mode"])),
                _item(f"{e['uid']}:{e['gid']}"), _item(e["sha256"][:16] + "…", e["sha256"]),
                _item(time.strftime("%Y-%m-%d %H:%M:%S",
                                    time.localtime(e["quarantined_at"]))),
                _item(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["restored_at"]))
                      if e.get("restored_at") else ""),
            ]
            for c, cell in enumerate(cells):
                cell.setData(Qt.ItemDataRole.UserRole, e["entry_id"])
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.entries[r]["entry_id"] for r in rows
                if not self.entries[r].get("restored_at")]

    def restore_selected(self) -> None:
        for entry_id in self.selected_ids():
            self.guard.action("guard.restore", {"entry_id": entry_id})

    def _quarantine(self) -> None:
        path = self.path.text().strip()
        if path:
            self.guard.action("guard.quarantine", {"path": path})


class EventsView(QWidget):
    """``guard.watch``: inotify events as they arrive, newest first."""

    COLUMNS = ["time", "event", "path"]
    MAX_ROWS = 5000

    def __init__(self, guard: GuardView) -> None:
        super().__init__(guard)
        self.guard = guard
        self.run: RunningOperation | None = None
        self.events: list[dict[str, Any]] = []
        self.next_seq = 0
        self.dropped = 0
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.toggle = QPushButton("Start watching")
        self.toggle.setAccessibleName("Start or stop watching live events")
        self.toggle.clicked.connect(self.toggle_watch)
        top.addWidget(self.toggle)
        self.state = QLabel("Not watching.")
        self.state.setTextFormat(Qt.TextFormat.PlainText)
        top.addWidget(self.state, 1)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        top.addWidget(self.clear_button)
        layout.addLayout(top)
        self.table = _table(self.COLUMNS, "Live events")
        layout.addWidget(self.table, 1)

    @property
    def watching(self) -> bool:
        return self.run is not None and not self.run.done

    def toggle_watch(self) -> None:
        if self.watching:
            assert self.run is not None
            self.run.cancel()
            self.state.setText("Stopping…")
            return
        link = self.guard.window_.link
        if link is None or link.state != "connected":
            return
        run = RunningOperation(link, "guard.watch", {"max_seconds": 0}, parent=self)
        run.progress.connect(self._on_progress)
        run.finished.connect(self._on_finished)
        self.run = run
        self.toggle.setText("Stop watching")
        self.state.setText("Watching the policy's paths (inotify)…")
        self.guard.window_.log.add("info", "guard.watch: subscribed to live events")
        run.start()

    def _on_progress(self, _permille: int, message: str) -> None:
        if not message.startswith("{"):
            return
        try:
            batch = json.loads(message)
        except ValueError:
            return
        seq = int(batch.get("seq", 0))
        if self.next_seq and seq > self.next_seq:
            self.dropped += seq - self.next_seq
        events = batch.get("events", [])
        self.next_seq = seq + len(events)
        for kind, path, when in events:
            self.add_event(kind, path, when)
        self.state.setText(f"Watching: {len(self.events)} event(s)"
                           + (f", {self.dropped} dropped (run a check)" if self.dropped else ""))

    def add_event(self, kind: str, path: str, when: float) -> None:
        self.events.append({"kind": kind, "path": path, "time": when})
        self.table.insertRow(0)
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
        kind_item = _item(kind)
        if kind in ("deleted", "moved_from", "overflow"):
            kind_item.setForeground(BAD_COLOR)
        elif kind in ("created", "moved_to"):
            kind_item.setForeground(OK_COLOR)
        else:
            kind_item.setForeground(WARN_COLOR)
        cells = [_item(stamp), kind_item, _item(self.guard.display_path(path), path)]
        for c, cell in enumerate(cells):
            self.table.setItem(0, c, cell)
        if self.table.rowCount() > self.MAX_ROWS:
            self.table.removeRow(self.table.rowCount() - 1)

    def _on_finished(self, result: Any, error: BaseException | None) -> None:
        self.toggle.setText("Start watching")
        if error is None:
            self.state.setText(f"Stopped ({result.get('ended', '')}): {result.get('events', 0)} "
                               f"event(s), {result.get('dropped', 0)} dropped.")
        else:
            from .results import error_text

            status, message = error_text(error)
            if status == "CANCELLED":
                self.state.setText(f"Stopped: {len(self.events)} event(s) seen.")
            else:
                self.state.setText(f"Watch ended: {status}: {message}")
        self.run = None

    def clear(self) -> None:
        self.events.clear()
        self.table.setRowCount(0)
