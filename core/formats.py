"""The picture formats Malleable reads and writes, declared once for the CLI, the GUI's dialogs,
project files and batch runs."""
from __future__ import annotations

# Extensions of pictures that can be opened (Pillow format names in READ_FORMATS).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
# Extension -> Pillow format for writing an edited picture.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".bmp": "BMP"}
PROJECT_EXTENSION = ".ora"


def describe_outputs() -> str:
    """'.png, .jpg, .webp, .tif or .bmp' for messages."""
    names = list(dict.fromkeys(ext for ext, fmt in OUTPUT_FORMATS.items()
                               if ext not in (".jpeg", ".tiff")))
    return ", ".join(names[:-1]) + " or " + names[-1]


def file_dialog_filter() -> str:
    """'*.png *.jpg …' for Qt file dialogs."""
    return " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
