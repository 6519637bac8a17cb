"""Importing this package registers every method."""
from . import reconstruct  # noqa: F401
from . import drag  # noqa: F401
