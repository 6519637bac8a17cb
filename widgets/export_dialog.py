"""File ▸ Export…: where, which format (the writable ones of core/formats.py) with its quality,
what (the whole picture, one layer, only the selection) and whether the edits' parameters go
into the file. The chosen settings are an ExportOptions; "Export Again" reuses them."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLineEdit, QMessageBox, QPushButton, QRadioButton,
                               QSpinBox, QVBoxLayout, QWidget)
from superqt import QLabeledSlider

from core.formats import OUTPUT_FORMATS

FORMAT_LABELS = {"PNG": "PNG — lossless, keeps transparency", "JPEG": "JPEG — photos, small, no transparency",
                 "WEBP": "WebP — small, lossy or lossless, keeps transparency",
                 "TIFF": "TIFF — lossless, for print", "BMP": "BMP — uncompressed"}
LOSSY = ("JPEG", "WEBP")
TIFF_COMPRESSIONS = {"lzw": "LZW (lossless)", "deflate": "Deflate (lossless)", "none": "None"}
# Where the edits' parameters can go: PNG text chunks, a JPEG comment.
METADATA_FORMATS = ("PNG", "JPEG")


def export_formats() -> dict[str, list[str]]:
    """Pillow format -> its extensions, first the usual one, in core.formats' order."""
    out: dict[str, list[str]] = {}
    for ext, fmt in OUTPUT_FORMATS.items():
        out.setdefault(fmt, []).append(ext)
    return out


def format_for(path: str) -> str | None:
    return OUTPUT_FORMATS.get(Path(path).suffix.lower())


@dataclass(frozen=True)
class ExportOptions:
    path: str = ""
    format: str = "PNG"            # a Pillow format name of core.formats.OUTPUT_FORMATS
    layer_id: int | None = None    # None: the picture as shown; else that layer alone (its mask applied)
    selection_only: bool = False   # crop to the selection's box; unselected pixels transparent (JPEG: white)
    quality: int = 92              # JPEG and lossy WebP, 1..100
    lossless: bool = False         # WebP
    png_compression: int = 6       # 0..9: file size and time only, never the pixels
    tiff_compression: str = "lzw"  # a key of TIFF_COMPRESSIONS
    embed_parameters: bool = True  # PNG text chunks / a JPEG comment with each edit's method and parameters

    def with_path(self, path: str) -> "ExportOptions":
        """The same settings for another file; the format follows the file's extension."""
        return replace(self, path=str(path), format=format_for(path) or self.format)


class ExportDialog(QDialog):
    def __init__(self, initial: ExportOptions, layers: list[tuple[int, str]], has_selection: bool, parent=None):
        """layers: (id, name) top first, as the Layers panel lists them."""
        super().__init__(parent)
        self.setWindowTitle("Export")
        self._formats = export_formats()
        form = QFormLayout()

        self.path_edit = QLineEdit(initial.path)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        form.addRow("File", path_row)

        self.format_combo = QComboBox()
        for fmt in self._formats:
            self.format_combo.addItem(FORMAT_LABELS.get(fmt, fmt), fmt)
        form.addRow("Format", self.format_combo)

        self.quality = QLabeledSlider(Qt.Orientation.Horizontal)
        self.quality.setRange(1, 100)
        self.quality.setValue(initial.quality)
        self.quality.setToolTip("Higher keeps more detail and makes a larger file")
        form.addRow("Quality", self.quality)
        self.lossless = QCheckBox("Lossless (exact pixels)")
        self.lossless.setChecked(initial.lossless)
        form.addRow("", self.lossless)
        self.png_level = QSpinBox()
        self.png_level.setRange(0, 9)
        self.png_level.setValue(initial.png_compression)
        self.png_level.setToolTip("0 = fastest, 9 = smallest; the pixels are the same")
        form.addRow("Compression", self.png_level)
        self.tiff_combo = QComboBox()
        for key, label in TIFF_COMPRESSIONS.items():
            self.tiff_combo.addItem(label, key)
        self.tiff_combo.setCurrentIndex(max(0, self.tiff_combo.findData(initial.tiff_compression)))
        form.addRow("TIFF compression", self.tiff_combo)
        self._rows = {w: form.labelForField(w) for w in (self.quality, self.png_level, self.tiff_combo)}

        self.whole = QRadioButton("The whole picture, as shown")
        self.one_layer = QRadioButton("One layer:")
        self.layer_combo = QComboBox()
        for lid, name in layers:
            self.layer_combo.addItem(name, lid)
        group = QButtonGroup(self)
        group.addButton(self.whole)
        group.addButton(self.one_layer)
        layer_index = self.layer_combo.findData(initial.layer_id) if initial.layer_id is not None else -1
        (self.one_layer if layer_index >= 0 else self.whole).setChecked(True)
        self.layer_combo.setCurrentIndex(max(0, layer_index))
        layer_row = QHBoxLayout()
        layer_row.addWidget(self.one_layer)
        layer_row.addWidget(self.layer_combo, 1)
        what = QVBoxLayout()
        what.addWidget(self.whole)
        what.addLayout(layer_row)
        self.selection_only = QCheckBox("Only the selection (cropped to it, transparent around it)")
        self.selection_only.setEnabled(has_selection)
        self.selection_only.setChecked(initial.selection_only and has_selection)
        if not has_selection:
            self.selection_only.setToolTip("Nothing is selected")
        what.addWidget(self.selection_only)
        form.addRow("Export", what)

        self.embed = QCheckBox("Save the edits' methods and parameters in the file")
        self.embed.setChecked(initial.embed_parameters)
        form.addRow("Metadata", self.embed)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole).setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        outer = QVBoxLayout(self)
        outer.addLayout(form)
        outer.addWidget(buttons)

        self.format_combo.currentIndexChanged.connect(self._on_format)
        self.path_edit.textEdited.connect(self._on_path_edited)
        self.lossless.toggled.connect(lambda _: self._update_rows())
        self.one_layer.toggled.connect(lambda on: self.layer_combo.setEnabled(on))
        self.layer_combo.setEnabled(self.one_layer.isChecked())
        self.one_layer.setEnabled(bool(layers))
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(format_for(initial.path) or initial.format)))
        self._update_rows()

    # ---- keeping the path and the format in step ------------------------------------------------
    @property
    def format(self) -> str:
        return self.format_combo.currentData()

    def _on_format(self) -> None:
        path = self.path_edit.text().strip()
        if path and format_for(path) != self.format:
            self.path_edit.setText(str(Path(path).with_suffix(self._formats[self.format][0])))
        self._update_rows()

    def _on_path_edited(self, text: str) -> None:
        fmt = format_for(text)
        if fmt and fmt != self.format:
            self.format_combo.blockSignals(True)
            self.format_combo.setCurrentIndex(self.format_combo.findData(fmt))
            self.format_combo.blockSignals(False)
            self._update_rows()

    def _update_rows(self) -> None:
        fmt = self.format
        shown = {self.quality: fmt in LOSSY, self.png_level: fmt == "PNG", self.tiff_combo: fmt == "TIFF"}
        for widget, visible in shown.items():
            widget.setVisible(visible)
            if self._rows[widget] is not None:
                self._rows[widget].setVisible(visible)
        self.lossless.setVisible(fmt == "WEBP")
        self.quality.setEnabled(not (fmt == "WEBP" and self.lossless.isChecked()))
        self.embed.setEnabled(fmt in METADATA_FORMATS)
        self.embed.setToolTip("" if fmt in METADATA_FORMATS else "Only PNG (text) and JPEG (a comment) hold them")
        self.adjustSize()

    def _browse(self) -> None:
        filters = ";;".join(f"{FORMAT_LABELS.get(f, f).split(' —')[0]} ({' '.join('*' + e for e in exts)})"
                            for f, exts in self._formats.items())
        selected = next((x for x in filters.split(";;") if x.startswith(FORMAT_LABELS[self.format].split(" —")[0])), "")
        path, _ = QFileDialog.getSaveFileName(self, "Export To", self.path_edit.text(), filters, selected)
        if path:
            self.path_edit.setText(path)
            self._on_path_edited(path)

    # ---- the result -------------------------------------------------------------------------------
    def options(self) -> ExportOptions:
        path = self.path_edit.text().strip()
        if path and format_for(path) != self.format:
            path = str(Path(path).with_name(Path(path).name + self._formats[self.format][0]))
        return ExportOptions(
            path=path, format=self.format,
            layer_id=self.layer_combo.currentData() if self.one_layer.isChecked() else None,
            selection_only=self.selection_only.isEnabled() and self.selection_only.isChecked(),
            quality=int(self.quality.value()), lossless=self.lossless.isChecked(),
            png_compression=self.png_level.value(), tiff_compression=self.tiff_combo.currentData(),
            embed_parameters=self.embed.isChecked())

    def accept(self) -> None:
        path = self.options().path
        if not path:
            QMessageBox.warning(self, "Export", "Choose the file to export to (Browse…).")
            return
        if Path(path).exists():
            answer = QMessageBox.question(self, "Export", f"“{Path(path).name}” exists already. Replace it?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        super().accept()


def ask_export_options(parent: QWidget | None, initial: ExportOptions, layers: list[tuple[int, str]],
                       has_selection: bool) -> ExportOptions | None:
    """The dialog, modal; None when cancelled. Tests stand in for a person here."""
    dlg = ExportDialog(initial, layers, has_selection, parent)
    try:
        return dlg.options() if dlg.exec() else None
    finally:
        dlg.deleteLater()
