"""Choose the diffusion model: the built-in demo, a Hugging Face id, a local diffusers folder or a
.safetensors checkpoint; device and precision. The model itself loads on the worker thread."""
from __future__ import annotations

from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QVBoxLayout, QWidget)

from core.models import DEFAULT_HUB_ID, DEMO_ID, ModelSpec

AUX_HELP = ("Some methods need extra encoders, downloaded on first use like the model: StyleDiffusion needs "
            "CLIP (openai/clip-vit-base-patch16); DiffuseIT needs DINO (facebook/dino-vitb8) and CLIP "
            "(openai/clip-vit-base-patch32); pix2pix-zero can caption images with BLIP "
            "(Salesforce/blip-image-captioning-base) or uses your source prompt. The demo model bundles tiny "
            "versions of all of them.")


class ModelDialog(QDialog):
    def __init__(self, current: ModelSpec, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Model")
        lay = QVBoxLayout(self)
        self.group = QButtonGroup(self)
        self.demo = QRadioButton("Built-in demo model (tiny, runs anywhere, draws simple shapes)")
        self.hub = QRadioButton("Download from Hugging Face:")
        self.folder = QRadioButton("A diffusers model folder:")
        self.file = QRadioButton("A checkpoint file (.safetensors):")
        self.hub_id = QLineEdit(DEFAULT_HUB_ID)
        self.folder_path = QLineEdit()
        self.file_path = QLineEdit()
        rows = [(self.demo, None), (self.hub, self.hub_id), (self.folder, self.folder_path), (self.file, self.file_path)]
        for i, (radio, field) in enumerate(rows):
            self.group.addButton(radio, i)
            row = QHBoxLayout()
            row.addWidget(radio)
            if field is not None:
                row.addWidget(field, 1)
                if field is not self.hub_id:
                    browse = QPushButton("Browse…")
                    browse.clicked.connect(lambda _=False, f=field: self._browse(f))
                    row.addWidget(browse)
                field.textEdited.connect(lambda _=None, r=radio: r.setChecked(True))
            lay.addLayout(row)
        form = QFormLayout()
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.precision = QComboBox()
        self.precision.addItems(["auto", "fp16", "bf16", "fp32"])
        self.allow_pickle = QCheckBox("Allow pickle checkpoints (.ckpt/.bin) — they can run code; only trusted files")
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        lay.addLayout(form)
        lay.addWidget(self.allow_pickle)
        help_label = QLabel(AUX_HELP)
        help_label.setWordWrap(True)
        lay.addWidget(help_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Load")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.set_spec(current)

    def _browse(self, field: QLineEdit) -> None:
        if field is self.folder_path:
            path = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", "",
                                                  "Checkpoints (*.safetensors *.ckpt *.bin)")
        if path:
            field.setText(path)
            {self.folder_path: self.folder, self.file_path: self.file}[field].setChecked(True)

    def set_spec(self, spec: ModelSpec) -> None:
        src = spec.source or DEMO_ID
        if src == DEMO_ID:
            self.demo.setChecked(True)
        elif src.lower().endswith((".safetensors", ".ckpt", ".bin")):
            self.file.setChecked(True)
            self.file_path.setText(src)
        elif "/" in src and not src.startswith(("/", ".", "~")) and src.count("/") == 1:
            self.hub.setChecked(True)
            self.hub_id.setText(src)
        else:
            self.folder.setChecked(True)
            self.folder_path.setText(src)
        self.device.setCurrentText(spec.device)
        self.precision.setCurrentText(spec.precision)
        self.allow_pickle.setChecked(spec.allow_pickle)

    def spec(self) -> ModelSpec:
        source = {0: DEMO_ID, 1: self.hub_id.text().strip(), 2: self.folder_path.text().strip(),
                  3: self.file_path.text().strip()}[self.group.checkedId()]
        return ModelSpec(source or DEMO_ID, self.device.currentText(), self.precision.currentText(),
                         self.allow_pickle.isChecked())
