"""Between the document and files on disk: projects (.ora) and plain pictures (exports: export.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InvalidInput
from core.formats import PROJECT_EXTENSION
from core.images import load_rgba

from .document import Document, Layer
from .ora import LayerData, ProjectData, read_ora, write_ora


def is_project(path) -> bool:
    return Path(path).suffix.lower() == PROJECT_EXTENSION


def document_to_project(doc: Document) -> ProjectData:
    layers = [LayerData(l.name, l.pixels, l.visible, l.opacity, l.mask, l.metadata) for l in doc.layers]
    active = doc.active_layer
    return ProjectData(doc.width, doc.height, layers, doc.edit_mask_array(), doc.point_pairs(),
                       doc.index_of(active) if active else None)


def save_project(doc: Document, path) -> None:
    write_ora(path, document_to_project(doc))
    doc.mark_saved(Path(path))


def open_into(doc: Document, path) -> None:
    """Open a project or a picture into doc. Everything is read before doc changes, so a file that
    fails to read (OraError / core's InvalidInput) leaves the open document exactly as it was."""
    path = Path(path)
    if is_project(path):
        data = read_ora(path)
        layers = [Layer(d.name, d.pixels, d.visible, d.opacity, d.mask, d.metadata) for d in data.layers]
        doc.load_project(data.width, data.height, layers, data.edit_mask, data.points, path,
                         data.active_index)
    else:
        rgba = read_picture(path)
        # A picture opened directly is not a project yet: Save asks where the .ora goes.
        doc.load_image(rgba, path.stem, source_path=path)


def read_picture(path) -> np.ndarray:
    """A picture file as RGBA uint8, decoded by core (the same pixels the CLI reads)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"“{path.name}” is a folder, not a picture.")
    return load_rgba(path)

