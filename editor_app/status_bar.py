"""The window's status bar: cursor position, picture size, zoom, the device and model, model
downloads, and "Finishing…" while the window waits for the runner to stop.

GPU memory comes from the runner's `DeviceStatus` events (read on the runner's thread after every
job): the GUI thread never calls torch.cuda."""
from __future__ import annotations

from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

GB = 2 ** 30
MB = 2 ** 20


def describe_device() -> str:
    """The device edits will run on, as the status bar shows it. Imports torch: call it late."""
    try:
        import torch
        from core.device import pick_device
        dev = pick_device("auto")
        if dev.type == "cuda":
            return f"GPU: {torch.cuda.get_device_name(dev)}"
        if dev.type == "mps":
            return "GPU: Apple (MPS)"
        return "CPU"
    except Exception as exc:  # a broken torch install must not stop the editor from opening
        return f"no device ({type(exc).__name__})"


class WindowStatus:
    """Owns the permanent labels and the download controls of one QStatusBar."""

    def __init__(self, bar: QStatusBar):
        self.bar = bar
        self.zoom_label = QLabel("100 %")
        self.cursor_label = QLabel("")
        self.size_label = QLabel("")
        self.device_label = QLabel("Device: …")
        self.cursor_label.setMinimumWidth(110)
        for w in (self.cursor_label, self.size_label, self.zoom_label, self.device_label):
            bar.addPermanentWidget(w)
        # A progress bar and a Cancel button, shown only while a model downloads. Made now, put
        # into the bar on the first download (a hidden button would still make the bar taller).
        self.download_bar = QProgressBar()
        self.download_bar.setMaximumWidth(220)
        self.download_bar.setFormat("Downloading %p%")
        self.download_cancel = QPushButton("Cancel download")
        self._memory = ""  # "  · 3.2 GB" after the device label, on a GPU
        self._finishing = False

    def message(self, text: str, ms: int = 4000) -> None:
        if self._finishing:
            return  # "Finishing…" stays until the window closes (a timed message's timer would outlive it)
        self.bar.showMessage(text, ms)

    # ---- view state --------------------------------------------------------------------------
    def show_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f} %")

    def show_cursor(self, pos: QPointF | None) -> None:
        self.cursor_label.setText("" if pos is None else f"x {int(pos.x())}  y {int(pos.y())}")

    def show_size(self, doc) -> None:
        self.size_label.setText("" if doc.is_empty else f"{doc.width} × {doc.height} px")

    # ---- device and model ----------------------------------------------------------------------
    def show_device(self, text: str) -> None:
        self._memory = ""
        self.device_label.setToolTip("")
        self.device_label.setText(text)

    def probe_device(self) -> None:
        self.show_device(f"Device: {describe_device()}")

    def model_loading(self, source: str) -> None:
        self.show_device(f"Loading {source}…")

    def model_loaded(self, description: str) -> None:
        self.hide_download()
        self.show_device(f"Model: {description}")
        if description.startswith("demo"):
            # First runs have only the demo: say plainly how to get the real model.
            self.message("Using the built-in demo model (it draws simple shapes). For real photos "
                         "get Stable Diffusion 1.5: Help ▸ Getting Stable Diffusion…", 15000)
        else:
            self.message(f"Model ready: {description}", 5000)

    def model_failed(self) -> None:
        self.hide_download()
        self.probe_device()

    def device_status(self, ev) -> None:
        """A core.runner.DeviceStatus: memory in use on a GPU, after the device label."""
        if not ev.device.startswith("cuda") or not ev.total:
            return
        base = self.device_label.text()
        if self._memory and base.endswith(self._memory):
            base = base[: -len(self._memory)]
        used = ev.allocated / GB
        self._memory = f"  · {used:.1f} GB"
        self.device_label.setText(base + self._memory)
        self.device_label.setToolTip(f"GPU memory in use: {used:.1f} GB (reserved {ev.reserved / GB:.1f} GB "
                                     f"of {ev.total / GB:.0f} GB)")

    # ---- downloads -----------------------------------------------------------------------------
    def download_progress(self, done: int, total: int) -> None:
        if self.download_bar.parent() is None:
            self.bar.addWidget(self.download_bar)
            self.bar.addWidget(self.download_cancel)
        self.download_bar.setRange(0, max(1, total // MB))
        self.download_bar.setValue(done // MB)
        self.download_bar.setToolTip(f"{done / MB:.0f} / {total / MB:.0f} MB")
        self.download_bar.show()
        self.download_cancel.show()

    def hide_download(self) -> None:
        self.download_bar.hide()
        self.download_cancel.hide()

    # ---- closing -------------------------------------------------------------------------------
    def finishing(self) -> None:
        self.message("Finishing… the running edit stops at its next step, then the window closes.", 0)
        self._finishing = True

    def window_closing(self) -> None:
        """A timed message's timer would outlive the window; "Finishing…" has none and stays to the end."""
        if not self._finishing:
            self.bar.clearMessage()
