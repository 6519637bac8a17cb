"""Data files shipped with Malleable: model configs, tokenizer files, sentence banks, the demo model."""
from pathlib import Path

# Also right in the PyInstaller bundle: there this module's __file__ lies under sys._MEIPASS
# (_internal/resources/), where packaging/malleable.spec puts the data files.
ROOT = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
