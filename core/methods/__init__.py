"""Importing this package registers every method."""
from . import reconstruct  # noqa: F401
from . import pnp  # noqa: F401
from . import drag  # noqa: F401
from . import pix2pix_zero  # noqa: F401
from . import style_diffusion  # noqa: F401
from . import diffuseit  # noqa: F401
