"""Reading pictures into the editor's one pixel format (RGBA, 8 bits, numpy) and back to Qt.

Decoding goes through core.images.decode_file, the one policy shared with the CLI and projects
(allowed formats, pixel limit checked from the header, EXIF orientation applied) and converted
exactly as the engine converts, so a picture has the same pixels in the editor as in the CLI. Every failure
becomes an ImageReadError with a sentence a person can act on.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from core.errors import InvalidInput
from core.formats import IMAGE_EXTENSIONS, READ_FORMATS  # noqa: F401  (re-exported for the editor)
from core.images import load_rgba

EXPORT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


class ImageReadError(Exception):
    """A picture could not be read; str(err) is the message to show."""


def decode_image(data_or_path, what: str = "the image", formats=READ_FORMATS) -> np.ndarray:
    """Decode a file path or a binary file object to RGBA uint8 under the engine's one picture
    policy (core.images.decode_file: allowed formats, pixel limit, orientation)."""
    try:
        return load_rgba(data_or_path, what=what, formats=formats)
    except InvalidInput as exc:
        raise ImageReadError(_sentence(str(exc))) from None
    except MemoryError:
        raise ImageReadError(f"There is not enough memory to open {what}.") from None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def load_image_rgba(path: str | os.PathLike) -> np.ndarray:
    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"“{p.name}” is a folder, not a picture.")
    return decode_image(str(p), what=f"“{p.name}”")


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (numpy memory may go away)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def qimage_to_rgba(image: QImage) -> np.ndarray:
    img = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h)
    return buf.reshape(h, bpl)[:, : 4 * w].reshape(h, w, 4).copy()


def mask_to_qimage(mask: np.ndarray) -> QImage:
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    h, w = mask.shape
    return QImage(mask.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


def encode_png(rgba_or_grey: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba_or_grey)).save(buf, format="PNG", compress_level=4)
    return buf.getvalue()
