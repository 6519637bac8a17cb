"""The pix2pix_zero method: see method.py."""
from .method import METHOD  # noqa: F401  (importing registers it)
