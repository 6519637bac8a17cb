"""Importing this package registers every method."""
from . import reconstruct  # noqa: F401
