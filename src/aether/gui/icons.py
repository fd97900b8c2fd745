"""The application and tray icons, drawn at run time (no image files to ship)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPen, QPixmap

STATE_COLORS = {
    "connected": "#2e9d4f",
    "connecting": "#3b7dd8",
    "lost": "#d9534f",
    "failed": "#d9534f",
    "alert": "#d18b00",
    "disconnected": "#7a7f87",
}


def app_icon(state: str = "disconnected") -> QIcon:
    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128):
        icon.addPixmap(_draw(size, STATE_COLORS.get(state, STATE_COLORS["disconnected"])))
    return icon


def _draw(size: int, color: str) -> QPixmap:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    margin = size * 0.06
    rect = QRectF(margin, margin, size - 2 * margin, size - 2 * margin)
    p.setBrush(QBrush(QColor(color)))
    p.setPen(QPen(QColor(0, 0, 0, 60), max(1.0, size / 32)))
    p.drawEllipse(rect)
    font = QFont("DejaVu Sans")
    font.setBold(True)
    font.setPixelSize(int(size * 0.55))
    p.setFont(font)
    p.setPen(QColor("white"))
    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, "Æ")
    p.end()
    return pix


def lock_icon(color: str = "#d18b00") -> QIcon:
    """A padlock, for privileged operations (no emoji font is assumed)."""
    icon = QIcon()
    for size in (16, 24, 32):
        pix = QPixmap(size, size)
        pix.fill(Qt.GlobalColor.transparent)
        p = QPainter(pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(color), max(1.5, size / 9))
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        shackle = QRectF(size * 0.3, size * 0.1, size * 0.4, size * 0.5)
        p.drawArc(shackle, 0, 180 * 16)
        p.drawLine(int(size * 0.3), int(size * 0.35), int(size * 0.3), int(size * 0.45))
        p.drawLine(int(size * 0.7), int(size * 0.35), int(size * 0.7), int(size * 0.45))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(color))
        p.drawRoundedRect(QRectF(size * 0.18, size * 0.45, size * 0.64, size * 0.47),
                          size * 0.08, size * 0.08)
        p.end()
        icon.addPixmap(pix)
    return icon
