"""Between the document and files on disk: projects (.ora) and plain pictures (exports: export.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from core.errors import InvalidInput
from core.formats import PROJECT_EXTENSION
from core.images import load_rgba

from .document import Document, Layer
from .ora import LayerData, ProjectData, ReadCancelled, read_ora, write_ora


def is_project(path) -> bool:
    return Path(path).suffix.lower() == PROJECT_EXTENSION


def document_to_project(doc: Document) -> ProjectData:
    layers = [LayerData(l.name, l.pixels, l.visible, l.opacity, l.mask, l.metadata, list(l.points), l.group)
              for l in doc.layers]
    active = doc.active_layer
    return ProjectData(doc.width, doc.height, layers, doc.edit_mask_array(), doc.point_pairs(),
                       doc.index_of(active) if active else None)


def save_project(doc: Document, path) -> None:
    """Save atomically, keeping the previous version as NAME.ora~ (as Krita keeps NAME.kra~)."""
    write_ora(path, document_to_project(doc), backup=True)
    doc.mark_saved(Path(path))


@dataclass
class OpenedFile:
    """A file read from disk, not yet in a document: a project, or a picture."""

    path: Path
    project: Optional[ProjectData] = None
    picture: Optional[np.ndarray] = None


def read_file(path, progress=None, cancel=None) -> OpenedFile:
    """Read a project or a picture without touching any document (any thread; no Qt). Raises
    OraError / core's InvalidInput, or ReadCancelled when cancel() answered True."""
    path = Path(path)
    if is_project(path):
        return OpenedFile(path, project=read_ora(path, progress, cancel))
    if progress:
        progress(0, 1, path.name)
    rgba = read_picture(path)
    if cancel and cancel():
        raise ReadCancelled()
    return OpenedFile(path, picture=rgba)


def load_into(doc: Document, opened: OpenedFile, belongs_to: Optional[tuple] = None) -> None:
    """Replace doc's content with what was read (the GUI thread). `belongs_to` = (project path or
    None, source path or None) when the content belongs elsewhere than the file it was read from
    (a recovered autosave: Save writes to its project, never to the autosave)."""
    if opened.project is not None:
        data = opened.project
        layers = [Layer(d.name, d.pixels, d.visible, d.opacity, d.mask, d.metadata, tuple(d.points), d.group)
                  for d in data.layers]
        path, source = (opened.path, None) if belongs_to is None else belongs_to
        doc.load_project(data.width, data.height, layers, data.edit_mask, data.points, path,
                         data.active_index, source_path=source)
    else:
        # A picture opened directly is not a project yet: Save asks where the .ora goes.
        doc.load_image(opened.picture, opened.path.stem, source_path=opened.path)


def open_into(doc: Document, path) -> None:
    """Open a project or a picture into doc. Everything is read before doc changes, so a file that
    fails to read (OraError / core's InvalidInput) leaves the open document exactly as it was."""
    load_into(doc, read_file(path))


def read_picture(path) -> np.ndarray:
    """A picture file as RGBA uint8, decoded by core (the same pixels the CLI reads)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"“{path.name}” is a folder, not a picture.")
    return load_rgba(path)

