"""The dark theme: Fusion with a dark palette, so pictures are judged against neutral grey."""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

WINDOW = QColor(45, 45, 48)
BASE = QColor(32, 32, 34)
TEXT = QColor(220, 220, 220)
ACCENT = QColor(62, 130, 230)
CANVAS_BACKGROUND = QColor(38, 38, 40)

STYLESHEET = """
QToolBar { border: none; spacing: 2px; padding: 2px; }
QToolBar::separator { background: #4a4a4e; width: 1px; height: 1px; margin: 4px; }
QToolButton { border: 1px solid transparent; border-radius: 3px; padding: 3px; }
QToolButton:hover { background: #3c3c40; border-color: #55555a; }
QToolButton:checked { background: #2f4d7a; border-color: #3e82e6; }
QDockWidget::title { background: #38383c; padding: 4px 6px; }
QStatusBar QLabel { color: #b8b8b8; padding: 0 8px; }
QListWidget { background: #262628; }
QListWidget::item { padding: 2px; }
QListWidget::item:selected { background: #2f4d7a; }
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle(QStyleFactory.create("Fusion"))
    p = QPalette()
    dis = QPalette.ColorGroup.Disabled
    R = QPalette.ColorRole
    p.setColor(R.Window, WINDOW)
    p.setColor(R.WindowText, TEXT)
    p.setColor(R.Base, BASE)
    p.setColor(R.AlternateBase, WINDOW)
    p.setColor(R.ToolTipBase, QColor(25, 25, 25))
    p.setColor(R.ToolTipText, TEXT)
    p.setColor(R.PlaceholderText, QColor(130, 130, 130))
    p.setColor(R.Text, TEXT)
    p.setColor(R.Button, QColor(55, 55, 58))
    p.setColor(R.ButtonText, TEXT)
    p.setColor(R.BrightText, QColor(255, 80, 80))
    p.setColor(R.Link, ACCENT)
    p.setColor(R.Highlight, ACCENT)
    p.setColor(R.HighlightedText, QColor(255, 255, 255))
    p.setColor(R.Light, QColor(70, 70, 74))
    p.setColor(R.Midlight, QColor(60, 60, 64))
    p.setColor(R.Mid, QColor(40, 40, 42))
    p.setColor(R.Dark, QColor(25, 25, 27))
    p.setColor(R.Shadow, QColor(0, 0, 0))
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(dis, role, QColor(120, 120, 120))
    p.setColor(dis, R.Highlight, QColor(70, 70, 74))
    app.setPalette(p)
    app.setStyleSheet(STYLESHEET)
