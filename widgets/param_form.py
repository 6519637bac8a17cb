"""A parameter form generated from a method's dataclass: labels, tooltips, ranges, defaults and a
reset, common fields first and the rest under "Advanced". Adding a field to a method's dataclass
adds it here with no GUI code."""
from __future__ import annotations

import math
from typing import Callable, Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)
from superqt import QCollapsible

from core.formats import file_dialog_filter
from core.params import MethodParams

INT_LIMIT = 2 ** 31 - 1


class PathField(QWidget):
    """A file path with Browse…; `extra_choices` (e.g. the document's layers) fill a drop-down."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setMinimumContentsLength(12)
        self.combo.lineEdit().setPlaceholderText("(none)")
        self.browse = QPushButton("Browse…")
        lay.addWidget(self.combo, 1)
        lay.addWidget(self.browse)
        self.browse.clicked.connect(self._browse)
        self.combo.currentTextChanged.connect(lambda _: self.changed.emit())

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose an image", "",
                                              f"Images ({file_dialog_filter()})")
        if path:
            self.set_value(path)

    def set_choices(self, choices: list[str]) -> None:
        text = self.value()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems([""] + choices)
        self.combo.setEditText(text)
        self.combo.blockSignals(False)

    def value(self) -> str:
        return self.combo.currentText().strip()

    def set_value(self, v: str) -> None:
        self.combo.setEditText(v or "")


class PointsField(QLabel):
    """Handle/target pairs come from the canvas; the form only shows how many there are."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._points: tuple = ()
        self._update()

    def value(self) -> tuple:
        return self._points

    def set_value(self, pts) -> None:
        self._points = tuple(tuple(float(c) for c in p) for p in (pts or ()))
        self._update()

    def _update(self):
        n = len(self._points)
        self.setText(f"{n} point pair{'s' if n != 1 else ''} on the canvas" if n else
                     "No points: use the Points tool (P) — click a handle, then its target.")
        self.setWordWrap(True)


def _decimals(step_hint: float) -> int:
    return max(2, min(6, int(-math.floor(math.log10(step_hint))) + 1)) if step_hint > 0 else 3


class ParamForm(QWidget):
    """Editor widgets for one MethodParams class. `values()` gives a dict for from_dict()."""

    changed = Signal()

    def __init__(self, params_cls: type[MethodParams], parent=None):
        super().__init__(parent)
        self.params_cls = params_cls
        self.editors: dict[str, QWidget] = {}
        self._getters: dict[str, Callable] = {}
        self._setters: dict[str, Callable] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        common = QFormLayout()
        outer.addLayout(common)
        advanced_box = QWidget()
        advanced = QFormLayout(advanced_box)
        for f in (common, advanced):  # a long label puts its editor under it in a narrow dock
            f.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        described = params_cls.describe()
        for d in described:
            editor = self._make_editor(d)
            label = QLabel(d["label"] + ("*" if d["required"] else ""))
            tip = d["help"] + (f"  (range {d['min']}–{d['max']})" if d["min"] is not None or d["max"] is not None else "")
            label.setToolTip(tip)
            editor.setToolTip(tip)
            (advanced if d["advanced"] else common).addRow(label, editor)
            self.editors[d["name"]] = editor
        self.advanced: Optional[QCollapsible] = None
        if any(d["advanced"] for d in described):
            self.advanced = QCollapsible("Advanced")
            self.advanced.addWidget(advanced_box)
            outer.addWidget(self.advanced)
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.clicked.connect(self.reset)
        outer.addWidget(self.reset_button)
        self.reset()

    # ---- construction ----------------------------------------------------------------------------
    def _make_editor(self, d: dict) -> QWidget:
        name, kind = d["name"], d["type"]
        if kind == "int":
            w = QSpinBox()
            w.setRange(int(d["min"]) if d["min"] is not None else -INT_LIMIT,
                       int(min(d["max"], INT_LIMIT)) if d["max"] is not None else INT_LIMIT)
            w.valueChanged.connect(lambda _: self.changed.emit())
            get, put = w.value, lambda v, w=w: w.setValue(int(v))
        elif kind == "float":
            w = QDoubleSpinBox()
            lo = d["min"] if d["min"] is not None else -1e9
            hi = d["max"] if d["max"] is not None else 1e9
            default = abs(d["default"] or 0) or (hi - lo if math.isfinite(hi - lo) and hi - lo < 1e6 else 1.0)
            step = 10 ** math.floor(math.log10(default)) / 10 if default > 0 else 0.01
            w.setDecimals(_decimals(step))
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.valueChanged.connect(lambda _: self.changed.emit())
            get, put = w.value, lambda v, w=w: w.setValue(float(v))
        elif kind == "bool":
            w = QCheckBox()
            w.toggled.connect(lambda _: self.changed.emit())
            get, put = w.isChecked, lambda v, w=w: w.setChecked(bool(v))
        elif kind == "choice":
            w = QComboBox()
            w.addItems(d["choices"])
            w.currentTextChanged.connect(lambda _: self.changed.emit())
            get, put = w.currentText, lambda v, w=w: w.setCurrentText(str(v))
        elif kind == "path":
            w = PathField()
            w.changed.connect(self.changed)
            get, put = w.value, w.set_value
        elif kind == "points":
            w = PointsField()
            get, put = w.value, w.set_value
        else:  # str, text
            w = QLineEdit()
            if d["required"]:
                w.setPlaceholderText("required")
            w.textChanged.connect(lambda _: self.changed.emit())
            get, put = (lambda w=w: w.text().strip()), (lambda v, w=w: w.setText(str(v or "")))
        w.setObjectName(f"param_{name}")
        self._getters[name] = get
        self._setters[name] = put
        return w

    # ---- values --------------------------------------------------------------------------------
    def values(self) -> dict:
        return {name: get() for name, get in self._getters.items()}

    def set_values(self, values: dict) -> None:
        for name, v in values.items():
            if name in self._setters:
                self._setters[name](v)

    def reset(self) -> None:
        self.set_values({d["name"]: d["default"] for d in self.params_cls.describe()})

    def editor(self, name: str) -> QWidget:
        return self.editors[name]

    def fields_of_kind(self, kind: str) -> list[str]:
        return [d["name"] for d in self.params_cls.describe() if d["type"] == kind]
