"""The user's LoRAs in the model dialog: one row per file with its scale; add, remove, rescale. The
order is the order they are applied in (core/loras.py)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QAbstractItemView, QDoubleSpinBox, QFileDialog, QHBoxLayout, QHeaderView,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from core.loras import LoraSpec

SCALE_RANGE = (-4.0, 4.0)  # LoRAs are made for about 0..1.5; negative scales push away from them
PATH_ROLE = 256            # Qt.ItemDataRole.UserRole: the full path behind the file name shown


class LoraList(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["LoRA file", "Scale"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(84)
        self.table.setToolTip("Your LoRAs (style, character, LCM-LoRA): .safetensors files in Kohya/civitai or "
                              "diffusers format, applied in this order with these scales.")
        self.add_button = QPushButton("Add LoRA…")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self._browse)
        self.remove_button.clicked.connect(self.remove_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table)
        lay.addLayout(buttons)
        self._update_buttons()

    def _browse(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add LoRAs", "", "LoRA files (*.safetensors);;All files (*)")
        for path in paths:
            self.add_lora(path)

    def add_lora(self, path: str, scale: float = 1.0) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        item = QTableWidgetItem(Path(path).name)
        item.setData(PATH_ROLE, str(path))
        item.setToolTip(str(path))
        self.table.setItem(row, 0, item)
        spin = QDoubleSpinBox()
        spin.setRange(*SCALE_RANGE)
        spin.setSingleStep(0.05)
        spin.setDecimals(2)
        spin.setValue(float(scale))
        spin.setToolTip("How strongly the LoRA applies: 1 as made, 0 off")
        self.table.setCellWidget(row, 1, spin)
        self._update_buttons()

    def remove_selected(self) -> None:
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
        self._update_buttons()

    def set_loras(self, loras) -> None:
        self.table.setRowCount(0)
        for spec in loras:
            self.add_lora(spec.path, spec.scale)

    def loras(self) -> tuple[LoraSpec, ...]:
        return tuple(LoraSpec(self.table.item(r, 0).data(PATH_ROLE), self.table.cellWidget(r, 1).value())
                     for r in range(self.table.rowCount()))

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.table.selectedIndexes()))
