"""Small dialogs. The window calls them through this module so tests can stand in for a person."""
from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from core.formats import IMAGE_EXTENSIONS

OPEN_FILTER = ("Pictures and projects (*.ora " + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ");;"
               "OpenRaster projects (*.ora);;"
               "Pictures (" + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ");;All files (*)")
IMAGE_FILTER = "Pictures (" + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ");;All files (*)"
PROJECT_FILTER = "OpenRaster project (*.ora)"

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def exec_once(dialog) -> int:
    """Run a modal dialog and have it deleted once control is back in the event loop. A dialog parented to the window and left alive is
    deleted twice at quit (by Qt with its parent, by Python's collector: "shared QObject was
    deleted directly") and takes the process down."""
    try:
        return dialog.exec()
    finally:
        dialog.deleteLater()


def show_error(parent: QWidget | None, title: str, message: str) -> None:
    QMessageBox.critical(parent, title, message)


def show_info(parent: QWidget | None, title: str, message: str) -> None:
    QMessageBox.information(parent, title, message)


def ask_save_changes(parent: QWidget | None, name: str) -> str:
    box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved changes",
                      f"Save the changes to “{name}” before closing?",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, parent)
    box.setInformativeText("Your changes are lost if you don't save them.")
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = exec_once(box)
    if answer == QMessageBox.StandardButton.Save:
        return SAVE
    if answer == QMessageBox.StandardButton.Discard:
        return DISCARD
    return CANCEL


def ask_open_result(parent: QWidget | None, text: str, name: str) -> bool:
    """An edit finished for a picture that is no longer open: open its result as a new picture?"""
    box = QMessageBox(QMessageBox.Icon.Information, "Edit finished", text, QMessageBox.StandardButton.NoButton,
                      parent)
    box.setInformativeText(f"Open “{name}” as a new picture, or discard it?")
    open_button = box.addButton("Open as New Picture", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(open_button)
    exec_once(box)  # deleted later: it can still be asked which button was pressed
    return box.clickedButton() is open_button


def ask_open_path(parent, directory: str, filter_: str = OPEN_FILTER, title="Open") -> str:
    return QFileDialog.getOpenFileName(parent, title, directory, filter_)[0]


def ask_open_paths(parent, directory: str, title="Add Image as Layer") -> list[str]:
    return QFileDialog.getOpenFileNames(parent, title, directory, IMAGE_FILTER)[0]


def ask_save_path(parent, suggested: str, filter_: str, title: str) -> str:
    return QFileDialog.getSaveFileName(parent, title, suggested, filter_)[0]


def ask_text(parent, title: str, label: str, text: str) -> str | None:
    from PySide6.QtWidgets import QInputDialog
    value, ok = QInputDialog.getText(parent, title, label, text=text)
    return value if ok else None


def ask_number(parent, title: str, label: str, value: float, lo: float, hi: float, decimals: int = 0) -> float | None:
    from PySide6.QtWidgets import QInputDialog
    number, ok = QInputDialog.getDouble(parent, title, label, value, lo, hi, decimals)
    return number if ok else None


def show_about(parent) -> None:
    QMessageBox.about(parent, "About Malleable",
                      "<b>Malleable</b> 0.1<br>Edit pictures with Stable Diffusion while keeping their "
                      "structure. Results land on new layers; nothing is destroyed.")


OPEN, LATER = "open", "later"


def recover_box(parent, description: str) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved work",
                      f"Malleable did not close normally last time. An autosaved document was found:\n\n"
                      f"{description}", QMessageBox.StandardButton.NoButton, parent)
    box.setInformativeText("Open it to continue where you left off, or discard it for good.")
    open_ = box.addButton("Open", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(open_)
    return box


def ask_recover(parent, description: str) -> str:
    """A document an earlier session left unsaved when it ended: OPEN, DISCARD or LATER (it is
    offered again next time)."""
    box = recover_box(parent, description)
    box.exec()
    clicked = box.clickedButton()
    return {"Open": OPEN, "Discard": DISCARD}.get(clicked.text() if clicked else "", LATER)
