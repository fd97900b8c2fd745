"""The main window: services and the handshake on the left; operations,
their forms, running operations, results and the log on the right."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QSystemTrayIcon,
    QTabWidget,
    QWidget,
)

from . import icons, tasks
from .operations import OperationsPanel
from .panels import HandshakePanel, LogPanel, RunningPanel, ServicesPanel
from .results import ResultView, error_text
from .session import Connected, Link, RunningOperation


class MainWindow(QMainWindow):
    """``aether gui``."""

    operation_finished = Signal(object)  # RunningOperation

    def __init__(self, *, transport: str = "auto", poll_ms: int = 1000,
                 tray: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("Aether control panel")
        self.setWindowIcon(icons.app_icon())
        self.transport = transport
        self.poll_ms = poll_ms
        self.link: Link | None = None
        self.info: Connected | None = None
        self.runs: list[RunningOperation] = []
        self.guard_view: Any = None
        self.quitting = False

        self.services = ServicesPanel()
        self.services.open_requested.connect(self.open_service)
        self.handshake = HandshakePanel()
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.services)
        left.addWidget(self.handshake)
        left.setSizes([170, 600])

        self.operations = OperationsPanel()
        self.operations.run_requested.connect(self.run_operation)
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Views")
        self.tabs.addTab(self.operations, "Operations")
        self.running = RunningPanel()
        self.running.show_requested.connect(self.show_run)
        self.result = ResultView()
        self.log = LogPanel()
        self.bottom = QTabWidget()
        self.bottom.addTab(self.result, "Result")
        self.bottom.addTab(self.log, "Log")
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.tabs)
        right.addWidget(self.running)
        right.addWidget(self.bottom)
        right.setSizes([430, 130, 230])
        self.right_split = right

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setStretchFactor(0, 2)
        main.setStretchFactor(1, 3)
        main.setSizes([560, 820])
        self.setCentralWidget(main)

        self.guard_label = QLabel("")
        self.guard_label.setTextFormat(Qt.TextFormat.PlainText)
        self.guard_label.setAccessibleName("Guard state")
        self.statusBar().addPermanentWidget(self.guard_label)
        self.state_label = QLabel("not connected")
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label.setAccessibleName("Connection state")
        self.statusBar().addPermanentWidget(self.state_label)
        self._build_actions()
        self.tray: QSystemTrayIcon | None = None
        if tray and QSystemTrayIcon.isSystemTrayAvailable():
            self._build_tray()
        self.resize(1380, 860)
        self.log.add("info", "Aether control panel started")

    # -- menus, shortcuts, tray --------------------------------------------------------
    def _action(self, menu: QMenu, text: str, shortcut: Any, slot: Any, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip or text)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        service = bar.addMenu("&Service")
        self._action(service, "&Connect to selected", "Ctrl+O",
                     self.services._open_selected, "Connect to the selected service")
        self._action(service, "&Disconnect", "Ctrl+D", self.disconnect_service)
        self._action(service, "&Refresh", QKeySequence.StandardKey.Refresh, self.refresh)
        service.addSeparator()
        self._action(service, "&Quit", QKeySequence.StandardKey.Quit, self.quit)
        op = bar.addMenu("&Operation")
        self._action(op, "&Run", "Ctrl+Return", self.operations.run, "Run the operation")
        self._action(op, "Cancel &all running", "Ctrl+Shift+X", self.cancel_all)
        self._action(op, "&Find operation", "Ctrl+F", self.operations.filter.setFocus)
        op.addSeparator()
        self._action(op, "&Copy result", "Ctrl+Shift+C", self.result.copy)
        self._action(op, "&Export result…", "Ctrl+E", self.result.export_dialog)
        view = bar.addMenu("&View")
        self._action(view, "&Operations", "Ctrl+1", lambda: self.tabs.setCurrentIndex(0))
        self._action(view, "&Result", "Ctrl+R", lambda: self.bottom.setCurrentWidget(self.result))
        self._action(view, "&Log", "Ctrl+L", lambda: self.bottom.setCurrentWidget(self.log))

    def _build_tray(self) -> None:
        self.tray = QSystemTrayIcon(icons.app_icon(), self)
        menu = QMenu(self)
        show = menu.addAction("Show the control panel")
        show.triggered.connect(self._show_from_tray)
        menu.addSeparator()
        quit_action = menu.addAction("Quit")
        quit_action.triggered.connect(self.quit)
        self.tray.setContextMenu(menu)
        self.tray.activated.connect(lambda reason: self._show_from_tray()
                                    if reason == QSystemTrayIcon.ActivationReason.Trigger
                                    else None)
        self.tray.setToolTip("Aether: not connected")
        self.tray.show()

    def _show_from_tray(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.tray is not None and self.tray.isVisible() and not self.quitting:
            # Closing leaves the panel in the tray (it keeps watching the service).
            self.hide()
            self.tray.showMessage("Aether", "Still watching from the tray; Quit from its menu.",
                                  QSystemTrayIcon.MessageIcon.Information, 3000)
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def quit(self) -> None:
        from PySide6.QtCore import QCoreApplication

        self.quitting = True
        self.close()
        QCoreApplication.quit()

    def shutdown(self) -> None:
        """Stop watching, cancel what runs, close the sessions (in the background)."""
        for run in self.runs:
            run.cancel()
        if self.guard_view is not None:
            self.guard_view.detach()
        if self.link is not None:
            self.link.close()
        self.services.timer.stop()
        if self.tray is not None:
            self.tray.hide()

    # -- state -----------------------------------------------------------------------
    def set_state(self, state: str, text: str) -> None:
        self.state_label.setText(text)
        color = icons.STATE_COLORS.get(state, "")
        self.state_label.setStyleSheet(f"color: {color}; font-weight: bold;" if color else "")
        self.setWindowIcon(icons.app_icon(state))
        if self.tray is not None:
            self.tray.setIcon(icons.app_icon(state))
            self.tray.setToolTip(f"Aether: {text}")

    def set_guard_state(self, state: str, text: str) -> None:
        """Guard's state in the status bar and the tray (alert: unaccepted changes)."""
        color = icons.STATE_COLORS.get(state, "")
        self.guard_label.setText(text)
        self.guard_label.setStyleSheet(f"color: {color};" if color else "")
        if self.tray is not None:
            self.tray.setIcon(icons.app_icon(state))
            self.tray.setToolTip(f"Aether · {text}")

    def refresh(self) -> None:
        self.services.refresh()
        if self.link is not None:
            self.link.refresh()

    # -- connecting ----------------------------------------------------------------------
    def open_service(self, target: str) -> None:
        """Connect to a service by name or socket path (replacing any current one)."""
        if self.link is not None:
            self.link.close()
            self.link.deleteLater()
        self.info = None
        self.operations.set_enabled(False)
        self.handshake.begin(target)
        self.set_state("connecting", f"connecting to {target}…")
        self.log.add("info", f"connecting to {target} (transport {self.transport})")
        link = Link(target, transport=self.transport, poll_ms=self.poll_ms, parent=self)
        link.attempt_started.connect(lambda: self.handshake.begin(target))
        link.step.connect(self.handshake.add_step)
        link.connected.connect(self._connected)
        link.failed.connect(self._failed)
        link.lost.connect(self._lost)
        link.status.connect(self._status)
        link.message.connect(self.log.add)
        self.link = link
        link.open()

    def disconnect_service(self) -> None:
        if self.link is None:
            return
        name = self.info.service if self.info else self.link.target
        self.link.close()
        self.link = None
        self.info = None
        self.operations.set_enabled(False)
        self.handshake.disconnected()
        self.set_state("disconnected", "not connected")
        self.log.add("info", f"disconnected from {name}")

    def _connected(self, info: Connected) -> None:
        self.info = info
        self.handshake.connected(info)
        self.operations.set_operations(info.operations)
        self.set_state("connected", f"{info.service} {info.version} · pid {info.pid} · "
                                    f"{info.transport}")
        why = f" ({info.fallback_reason})" if info.fallback_reason else ""
        self.log.add("info", f"connected to {info.service} {info.version} (pid {info.pid}) "
                             f"on the {info.transport} transport{why}")
        self.services.refresh()
        self._maybe_guard(info)

    def _failed(self, exc: BaseException) -> None:
        self.handshake.failed(exc)
        self.set_state("failed", "connection failed")
        self.log.add("error", f"connection failed: {exc}")

    def _lost(self, why: str) -> None:
        self.handshake.lost(why)
        self.operations.set_enabled(False)
        self.set_state("lost", "service stopped · reconnecting")
        self.services.refresh()

    def _status(self, st: dict[str, Any]) -> None:
        if self.info is not None:
            self.statusBar().showMessage(
                f"uptime {st.get('uptime_s', 0):.0f} s · {st.get('sessions', 0)} sessions · "
                f"{st.get('operations_served', 0)} operations served")

    def _maybe_guard(self, info: Connected) -> None:
        names = {op.name for op in info.operations}
        if "guard.status" not in names or self.link is None:
            if self.guard_view is not None:
                self.guard_view.detach()
                self.tabs.removeTab(self.tabs.indexOf(self.guard_view))
                self.guard_view.deleteLater()
                self.guard_view = None
            return
        from .guard import GuardView

        if self.guard_view is None:
            self.guard_view = GuardView(self)
            self.tabs.addTab(self.guard_view, "Guard")
        self.guard_view.attach(self.link, info)

    # -- running ---------------------------------------------------------------------------
    def run_operation(self, name: str, params: dict[str, Any]) -> RunningOperation | None:
        if self.link is None or self.link.state != "connected":
            self.log.add("error", f"{name}: not connected")
            return None
        run = RunningOperation(self.link, name, params, parent=self)
        run.finished.connect(lambda _r, _e: self._finished(run))
        self.runs.append(run)
        self.running.add(run)
        self.log.add("info", f"{name} started with {params}")
        run.start()
        return run

    def _finished(self, run: RunningOperation) -> None:
        if run.error is None:
            self.log.add("info", f"{run.name} done in {run.elapsed:.2f} s")
        else:
            status, message = error_text(run.error)
            self.log.add("error", f"{run.name} ended with {status}: {message}")
        self.show_run(run)
        if len(self.runs) > 200:
            # Rows show the newest 50 runs; keep 100 and free the rest.
            keep = set(self.runs[-100:]) | {r for r in self.runs if not r.done}
            for old in self.runs:
                if old not in keep:
                    old.deleteLater()
            self.runs = [r for r in self.runs if r in keep]
        self.operation_finished.emit(run)

    def show_run(self, run: RunningOperation) -> None:
        title = f"{run.name} · {run.elapsed:.2f} s"
        if run.error is None:
            self.result.show_result(title + " · OK", run.result)
        else:
            self.result.show_error(title, run.error)
        self.bottom.setCurrentWidget(self.result)

    def cancel_all(self) -> None:
        for run in self.runs:
            if not run.done:
                run.cancel()

    def start(self, target: str | None = None) -> None:
        """Begin discovery (and connect to ``target``) once the window shows."""
        self.services.start()
        if target:
            self.open_service(target)

    def widget_named(self, name: str) -> QWidget | None:
        found: QWidget | None = self.findChild(QWidget, name)
        return found

    def wait_idle(self) -> None:
        tasks.wait_idle()
