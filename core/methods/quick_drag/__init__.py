"""The instant drag method: see method.py."""
from .method import METHOD  # noqa: F401  (importing registers it)
