"""The Edit dock: choose a method, fill its generated form, Run / Cancel, watch progress."""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QStackedWidget, QToolButton, QVBoxLayout, QWidget)

from core.registry import Method, all_methods

from . import fast_mode
from .notice_banner import NoticeBanner
from .param_form import ParamForm

VARIATIONS = 4  # "Run ×4": the same edit with this many seeds

# The order artists meet the methods in; methods not listed follow in registry order.
PREFERRED_ORDER = ("quick-drag", "drag", "pnp", "pix2pix-zero", "style-diffusion", "diffuseit")
# The Drag entry holds two methods one click apart (the first is the default); both take the same
# points and mask from the canvas. Live editing is offered for the instant one.
DRAG_ENTRY = "Drag"
DRAG_VARIANTS = (("quick-drag", "Instant", "Answers in seconds, no training: the picture is warped from each "
                                           "handle to its target and redrawn (FastDrag)."),
                 ("drag", "Precise", "Trains a small LoRA on the first drag of a picture, then moves the points "
                                     "step by step (DragDiffusion). Slower, follows the points closely."))
LIVE_METHOD = "quick-drag"

STAGE_NAMES = {
    "load": "Loading model", "lora": "Training LoRA", "invert": "Inverting", "drag": "Dragging",
    "denoise": "Denoising", "edit": "Editing", "train": "Training", "reference": "Reference pass",
    "resample": "Resampling", "guide": "Guiding", "regenerate": "Regenerating", "features": "Reading features",
    "decode": "Decoding",
}


def stage_label(stage: str, step: int, total: int) -> str:
    name = STAGE_NAMES.get(stage, stage.replace("_", " ").capitalize())
    return f"{name} {step}/{total}" if total > 1 else name


def ordered_methods() -> list[Method]:
    """The artist's methods; engine checks (Method.diagnostic) are the window's Tools ▸ Diagnostics."""
    methods = [m for m in all_methods() if not m.diagnostic]
    rank = {name: i for i, name in enumerate(PREFERRED_ORDER)}
    return sorted(methods, key=lambda m: rank.get(m.name, len(rank)))


def method_purpose(m: Method) -> str:
    """'Keep the layout, change the look.': the line under the method's plain name."""
    return f"{m.purpose[:1].upper()}{m.purpose[1:]}." if m.purpose else ""


def method_help(m: Method) -> str:
    """The method's help text; the paper it implements is named there, not in its plain name."""
    paper = f" ({m.paper})" if m.paper and m.paper not in m.description else ""
    needs = f"  Needs: {', '.join(m.needs)}." if m.needs else ""
    return f"{m.description}{paper}{needs}"


class EditPanel(QWidget):
    run_requested = Signal(str, dict)   # method name, form values
    cancel_requested = Signal()
    visible_picture_toggled = Signal(bool)  # edit every visible layer together instead of the selected one
    variations_requested = Signal(str, dict, int)  # method name, form values, how many seeds
    notice_action = Signal()                # the notice's button (the demo on a photo: choose a model)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.methods = ordered_methods()
        by_name = {m.name: m for m in self.methods}
        self._variants = [(by_name[n], text, tip) for n, text, tip in DRAG_VARIANTS if n in by_name]
        lay = QVBoxLayout(self)
        self.method_combo = QComboBox()
        self.purpose = QLabel()
        self.purpose.setWordWrap(True)
        self.purpose.setObjectName("methodPurpose")
        font = self.purpose.font()
        font.setBold(True)
        self.purpose.setFont(font)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setObjectName("methodDescription")
        self.forms: dict[str, ParamForm] = {}
        self.stack = QStackedWidget()
        # One combo entry per method, except the drag variants: one "Drag" entry, its data None.
        self._entries: list[list[Method]] = []
        variant_names = {m.name for m, _, _ in self._variants}
        for m in self.methods:
            form = ParamForm(m.params)
            self.forms[m.name] = form
            self.stack.addWidget(form)
            if m.name in variant_names and len(self._variants) > 1:
                if not any(len(e) > 1 for e in self._entries):
                    self.method_combo.addItem(DRAG_ENTRY, None)
                    self.method_combo.setItemData(self.method_combo.count() - 1,
                                                  "\n".join(f"{text}: {tip}" for _, text, tip in self._variants),
                                                  Qt.ItemDataRole.ToolTipRole)
                    self._entries.append([v for v, _, _ in self._variants])
                continue
            self.method_combo.addItem(m.plain_name, m.name)
            self.method_combo.setItemData(self.method_combo.count() - 1, method_help(m), Qt.ItemDataRole.ToolTipRole)
            self._entries.append([m])
        self.drag_row = self._make_drag_row()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Everything between the method and the Run button scrolls: the form keeps its room in a
        # small dock.
        body = QWidget()
        body_lay = QVBoxLayout(body)
        body_lay.setContentsMargins(0, 0, 0, 0)
        scroll.setWidget(body)
        self.visible_check = QCheckBox("Edit the visible picture")
        self.visible_check.setToolTip("Edit what you see, every visible layer together, instead of the layer "
                                      "selected in the Layers panel. The result goes on top.")
        self.visible_check.toggled.connect(self.visible_picture_toggled)
        self.fast_check = QCheckBox("Fast (LCM)")
        self.fast_check.setToolTip("The loaded model is a few-step one (LCM or TCD): run this edit in a few "
                                   "steps with the LCM sampler and a low guidance.")
        self.fast_note = QLabel()
        self.fast_note.setWordWrap(True)
        self.fast_check.toggled.connect(lambda _on: self._show_fast())
        self._few_step_model = False
        self.notice = NoticeBanner("Choose a Model…")
        self.notice.action_requested.connect(self.notice_action)
        lay.addWidget(self.method_combo)
        lay.addWidget(self.drag_row)
        lay.addWidget(self.purpose)
        for w in (self.description, self.visible_check, self.fast_check, self.fast_note, self.stack):
            body_lay.addWidget(w)
        body_lay.addStretch(1)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.notice)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Run the edit (Ctrl+Enter)")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running edit (Esc)")
        self.cancel_button.setEnabled(False)
        self.variations_button = QPushButton(f"Run ×{VARIATIONS}")
        self.variations_button.setToolTip(f"Run the same edit with {VARIATIONS} seeds; the results land as a "
                                          "group of layers to pick one from")
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.variations_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)
        self.stage_label = QLabel("Ready")
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.elapsed_label = QLabel("")
        self.queue_label = QLabel("")
        status = QHBoxLayout()
        status.addWidget(self.stage_label, 1)
        status.addWidget(self.elapsed_label)
        lay.addLayout(status)
        lay.addWidget(self.progress)
        lay.addWidget(self.queue_label)

        self.method_combo.currentIndexChanged.connect(self._on_method)
        self.run_button.clicked.connect(self._run)
        self.variations_button.clicked.connect(self._run_variations)
        self.cancel_button.clicked.connect(self.cancel_requested)
        for seq, slot in (("Ctrl+Return", self._run), ("Ctrl+Enter", self._run), ("Esc", self._cancel_if_busy)):
            QShortcut(QKeySequence(seq), self, activated=slot).setContext(Qt.ShortcutContext.WindowShortcut)
        self._busy = False
        self._started = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._tick)
        self._on_method(0)

    def _make_drag_row(self) -> QWidget:
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        self.variant_group = QButtonGroup(row)
        self.variant_buttons: dict[str, QToolButton] = {}
        for k, (m, text, tip) in enumerate(self._variants):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setCheckable(True)
            b.setChecked(k == 0)
            b.setObjectName(f"variant-{m.name}")
            self.variant_group.addButton(b, k)
            self.variant_buttons[m.name] = b
            lay.addWidget(b)
        self.live_check = QCheckBox("Live")
        self.live_check.setToolTip("Re-run the instant drag while a target point is dragged; the result lands "
                                   "as a layer when the point is let go.")
        lay.addWidget(self.live_check)
        lay.addStretch(1)
        self.variant_group.idClicked.connect(lambda _id: self._on_method(self.method_combo.currentIndex()))
        row.setVisible(False)
        return row

    # ---- method & form -------------------------------------------------------------------------
    @property
    def method(self) -> Method:
        entry = self._entries[self.method_combo.currentIndex()]
        if len(entry) == 1:
            return entry[0]
        return entry[max(0, self.variant_group.checkedId())]

    @property
    def form(self) -> ParamForm:
        return self.forms[self.method.name]

    @property
    def live(self) -> bool:
        """Live editing is on: the instant drag is chosen and Live is ticked."""
        return self.method.name == LIVE_METHOD and self.live_check.isChecked()

    def select_method(self, name: str) -> None:
        for idx, entry in enumerate(self._entries):
            for k, m in enumerate(entry):
                if m.name == name:
                    if len(entry) > 1:
                        self.variant_group.button(k).setChecked(True)
                    if idx == self.method_combo.currentIndex():
                        self._on_method(idx)
                    self.method_combo.setCurrentIndex(idx)
                    return
        raise KeyError(f"{name} is not one of the Edit panel's methods (engine checks are under Tools ▸ Diagnostics)")

    def _on_method(self, index: int) -> None:
        m = self.method
        self.drag_row.setVisible(len(self._entries[index]) > 1)
        self.live_check.setEnabled(m.name == LIVE_METHOD)
        # The stack takes the size of the form shown, not of the widest one (which made every form
        # wider than the dock, cut off on the right).
        for form in self.forms.values():
            policy = QSizePolicy.Policy.Preferred if form is self.forms[m.name] else QSizePolicy.Policy.Ignored
            form.setSizePolicy(policy, policy)
        self.stack.setCurrentWidget(self.forms[m.name])
        self.stack.adjustSize()
        self.purpose.setText(method_purpose(m))
        self.purpose.setVisible(bool(self.purpose.text()))
        self.description.setText(method_help(m))
        self.method_combo.setToolTip(method_help(m))
        self._show_fast()

    def _run(self) -> None:
        if self.run_button.isEnabled():
            self.run_requested.emit(self.method.name, self.form.values())

    def _run_variations(self) -> None:
        if self.variations_button.isEnabled():
            self.variations_requested.emit(self.method.name, self.form.values(), VARIATIONS)

    # ---- fast (few-step) sampling and the notice -------------------------------------------------
    def set_few_step_model(self, few_step: bool) -> None:
        """The loaded model is (not) a few-step one: Fast (LCM) is offered (or not)."""
        self._few_step_model = bool(few_step)
        self._show_fast()

    @property
    def fast(self) -> bool:
        """Fast (LCM) is chosen and applies to the current method on the loaded model."""
        return self.fast_check.isChecked() and fast_mode.offered(self.method, self._few_step_model)

    def _show_fast(self) -> None:
        m = self.method
        offered = fast_mode.offered(m, self._few_step_model)
        self.fast_check.setVisible(offered)
        on = offered and self.fast_check.isChecked()
        self.fast_note.setText(fast_mode.note(m) if on else "")
        self.fast_note.setVisible(on)
        replaced = fast_mode.changes(m) if on else {}
        for name, editor in self.form.editors.items():  # the fields Fast sets are not the form's to set
            editor.setEnabled(name not in replaced)

    def show_notice(self, text: str | None) -> None:
        self.notice.show_text(text)

    def _cancel_if_busy(self) -> None:
        if self._busy:
            self.cancel_requested.emit()

    # ---- progress ------------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.cancel_button.setEnabled(busy)
        if busy:
            self._started = time.monotonic()
            self._timer.start()
            self.progress.setRange(0, 0)
            self.stage_label.setText("Starting…")
        else:
            self._timer.stop()
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def show_progress(self, ev) -> None:
        self.stage_label.setText(stage_label(ev.stage, ev.step, ev.total))
        self.progress.setRange(0, max(1, ev.total))
        self.progress.setValue(ev.step)

    def show_done(self, text: str) -> None:
        self.stage_label.setText(text)
        self._tick()

    def show_queue(self, n: int) -> None:
        self.queue_label.setText(f"{n} edit{'s' if n != 1 else ''} queued" if n else "")

    def _tick(self) -> None:
        if self._started:
            self.elapsed_label.setText(f"{time.monotonic() - self._started:.1f} s")
