"""Light and dark palettes that follow the desktop's colour scheme."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

_Role = QPalette.ColorRole
_Group = QPalette.ColorGroup


def dark_palette() -> QPalette:
    p = QPalette()
    window, base, text = QColor(37, 40, 45), QColor(27, 29, 33), QColor(222, 224, 228)
    p.setColor(_Role.Window, window)
    p.setColor(_Role.WindowText, text)
    p.setColor(_Role.Base, base)
    p.setColor(_Role.AlternateBase, QColor(44, 47, 53))
    p.setColor(_Role.ToolTipBase, QColor(50, 54, 60))
    p.setColor(_Role.ToolTipText, text)
    p.setColor(_Role.PlaceholderText, QColor(130, 134, 140))
    p.setColor(_Role.Text, text)
    p.setColor(_Role.Button, QColor(50, 54, 60))
    p.setColor(_Role.ButtonText, text)
    p.setColor(_Role.BrightText, QColor(255, 90, 90))
    p.setColor(_Role.Link, QColor(100, 160, 255))
    p.setColor(_Role.Highlight, QColor(52, 120, 200))
    p.setColor(_Role.HighlightedText, QColor(255, 255, 255))
    p.setColor(_Role.Mid, QColor(70, 74, 80))
    p.setColor(_Role.Dark, QColor(20, 22, 25))
    for role in (_Role.WindowText, _Role.Text, _Role.ButtonText):
        p.setColor(_Group.Disabled, role, QColor(120, 124, 130))
    return p


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def apply(app: QApplication, mode: str = "auto") -> str:
    """Use Fusion with a light or dark palette; ``auto`` follows the system
    and keeps following it. Returns the scheme applied."""
    app.setStyle("Fusion")
    dark = mode == "dark" or (mode == "auto" and system_is_dark())
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    if mode == "auto" and not app.property("aether-theme-hooked"):
        app.setProperty("aether-theme-hooked", True)
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(lambda _s: apply(app, "auto"))
    return "dark" if dark else "light"
