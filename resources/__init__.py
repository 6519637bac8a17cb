"""Data files shipped with Malleable: model configs, tokenizer files, sentence banks, the demo model."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
