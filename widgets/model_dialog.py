"""Choose the diffusion model: the built-in demo, a Hugging Face id, a local diffusers folder or a
.safetensors checkpoint; device, precision and low-VRAM mode; the user's LoRAs with their scales;
and, under Advanced, the model family, its prediction type and a replacement VAE (for files whose
family cannot be read, SD 2.x base models, SDXL's fp16-safe VAE). The model itself loads on the
worker thread."""
from __future__ import annotations

from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QVBoxLayout, QWidget)
from superqt import QCollapsible

from core.families import FAMILIES, PREDICTIONS
from core.models import DEFAULT_HUB_ID, DEMO_ID, ModelSpec

from .lora_list import LoraList

AUX_HELP = ("Some methods need extra encoders, downloaded on first use like the model: StyleDiffusion needs "
            "CLIP (openai/clip-vit-base-patch16); DiffuseIT needs DINO (facebook/dino-vitb8) and CLIP "
            "(openai/clip-vit-base-patch32); pix2pix-zero can caption images with BLIP "
            "(Salesforce/blip-image-captioning-base) or uses your source prompt. The demo model bundles tiny "
            "versions of all of them.")


LOW_VRAM_TEXT = ("Low VRAM: keep only the UNet on the graphics card between uses and recompute instead of "
                 "storing (slower; for cards with 8 GB or less)")
PREDICTION_LABELS = {"auto": "Detect automatically", "epsilon": "epsilon (noise)",
                     "v_prediction": "v-prediction (SD 2.1 768 px)"}


class ModelDialog(QDialog):
    def __init__(self, current: ModelSpec, parent=None, loaded: str = ""):
        """loaded: the description of the model in use now (it names its family), if any."""
        super().__init__(parent)
        self.setWindowTitle("Model")
        lay = QVBoxLayout(self)
        self.loaded_label = QLabel(f"In use: {loaded}" if loaded else "No model loaded yet.")
        self.loaded_label.setWordWrap(True)
        self.loaded_label.setObjectName("loadedModel")
        lay.addWidget(self.loaded_label)
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
        self.low_vram = QCheckBox(LOW_VRAM_TEXT)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        lay.addLayout(form)
        lay.addWidget(self.low_vram)
        lay.addWidget(QLabel("LoRAs"))
        self.loras = LoraList()
        lay.addWidget(self.loras)
        lay.addWidget(self._advanced())
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

    def _advanced(self) -> QCollapsible:
        box = QWidget()
        form = QFormLayout(box)
        self.family = QComboBox()
        self.family.addItem("Detect automatically", "auto")
        for name, fam in FAMILIES.items():
            self.family.addItem(f"{fam.label} ({fam.native_size} px)", name)
        self.family.setToolTip("Which Stable Diffusion a model is. Detected from a folder or a checkpoint's "
                               "tensor names; choose it when detection is wrong.")
        self.prediction = QComboBox()
        for name in PREDICTIONS:
            self.prediction.addItem(PREDICTION_LABELS.get(name, name), name)
        self.prediction.setToolTip("What the model's UNet predicts. A single-file SD 2.x checkpoint is read as "
                                   "2.1 (v-prediction): choose epsilon for the 512 px base model.")
        self.vae = QLineEdit()
        self.vae.setPlaceholderText("(the model's own)")
        self.vae.setToolTip("A replacement VAE: a diffusers folder or a Hugging Face id, e.g. "
                            "madebyollin/sdxl-vae-fp16-fix for SDXL in fp16.")
        vae_browse = QPushButton("Browse…")
        vae_browse.clicked.connect(self._browse_vae)
        vae_row = QHBoxLayout()
        vae_row.addWidget(self.vae, 1)
        vae_row.addWidget(vae_browse)
        self.family_notes = QLabel()
        self.family_notes.setWordWrap(True)
        form.addRow("Family", self.family)
        form.addRow("Prediction", self.prediction)
        form.addRow("Replacement VAE", vae_row)
        form.addRow(self.family_notes)
        self.family.currentIndexChanged.connect(self._show_family_notes)
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(box)
        return self.advanced

    def _show_family_notes(self) -> None:
        fam = FAMILIES.get(self.family.currentData())
        self.family_notes.setText(fam.notes if fam is not None else "")
        self.family_notes.setVisible(bool(self.family_notes.text()))

    def _browse_vae(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a diffusers VAE folder")
        if path:
            self.vae.setText(path)

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
        self.low_vram.setChecked(spec.low_vram)
        self.loras.set_loras(spec.loras)
        self.family.setCurrentIndex(max(0, self.family.findData(spec.family)))
        self.prediction.setCurrentIndex(max(0, self.prediction.findData(spec.prediction)))
        self.vae.setText(spec.vae)
        self._revision = spec.revision  # not shown: a pin set from the command line is kept
        self._show_family_notes()
        if (spec.family, spec.prediction, spec.vae) != ("auto", "auto", ""):
            self.advanced.expand(animate=False)  # choices that are not the defaults are never hidden

    def spec(self) -> ModelSpec:
        source = {0: DEMO_ID, 1: self.hub_id.text().strip(), 2: self.folder_path.text().strip(),
                  3: self.file_path.text().strip()}[self.group.checkedId()]
        return ModelSpec(source or DEMO_ID, self.device.currentText(), self.precision.currentText(),
                         self.allow_pickle.isChecked(), family=self.family.currentData(),
                         prediction=self.prediction.currentData(), vae=self.vae.text().strip(),
                         loras=self.loras.loras(), low_vram=self.low_vram.isChecked(), revision=self._revision)
