"""A one-sentence warning with an action button, shown in a panel until the reason for it goes away
(the Edit panel: the demo model on a photo)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

STYLE = ("QFrame#notice { background: #4a3b12; border: 1px solid #b08d2a; border-radius: 4px; }"
         "QFrame#notice QLabel { color: #f3e3b0; }")


class NoticeBanner(QFrame):
    action_requested = Signal()

    def __init__(self, action_text: str, parent=None):
        super().__init__(parent)
        self.setObjectName("notice")
        self.setStyleSheet(STYLE)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.button = QPushButton(action_text)
        self.button.clicked.connect(self.action_requested)
        lay = QVBoxLayout(self)  # the sentence the whole width, the button under it: a narrow dock fits it
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.label)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.button)
        lay.addLayout(row)
        self.hide()

    def show_text(self, text: str | None) -> None:
        """Show the notice with this text; None or "" hides it."""
        self.label.setText(text or "")
        self.setVisible(bool(text))
