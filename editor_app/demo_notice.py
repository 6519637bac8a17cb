"""The built-in demo model on a photo: it was trained on ShapesWorld only (one or two flat-coloured
shapes on a plain or two-tone background), so on a photo its results are abstract. The Edit panel
says so before Run, with a button to the model dialog, whenever the demo is the model and the
picture an edit would take is not ShapesWorld-like.

"ShapesWorld-like" is read from two cheap statistics of the picture, brought down to at most 128 px
on its longer side (a strided pick, no filtering, well under a millisecond for any photo):

- flat share: the share of pixels whose four neighbours all differ from them by at most 8 levels
  in every channel. Flat-filled shapes and backgrounds are flat everywhere but at edges; a photo
  has texture and sensor noise nearly everywhere.
- colours: how many colours (4 bits per channel) cover 95 % of the pixels. A scene is a handful;
  a photo's gradients and shading make hundreds.

Measured (tests/test_demo_notice.py and the numbers below): 120 rendered scenes at 64, 256 and
512 px have a flat share of at least 0.83 and at most 3 colours; the demo's own results on a scene
(reconstruct, restyle) 0.85–0.91 and 14–35 colours, since its VAE adds a little noise; two
camera photos 0.05 and 0.10 with 62 and 263 colours. A picture is ShapesWorld-like when its flat
share is at least FLAT_MIN and its colours at most COLOURS_MAX: the margins sit between those."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.models import DEMO_ID

ANALYSIS_SIDE = 128
FLAT_STEP = 8       # levels (of 255) between neighbours that still count as flat
FLAT_MIN = 0.6
COLOURS_MAX = 48
COVERAGE = 0.95

NOTICE = ("The built-in demo only knows simple shapes — results on photos are abstract. "
          "File ▸ Model… to use Stable Diffusion.")


@dataclass(frozen=True)
class SceneStats:
    flat_share: float
    colours: int

    @property
    def shapes_like(self) -> bool:
        return self.flat_share >= FLAT_MIN and self.colours <= COLOURS_MAX


def scene_stats(rgba: np.ndarray) -> SceneStats:
    """The statistics of an HxWx3 or HxWx4 uint8 picture (transparent pixels read as mid grey)."""
    a = np.asarray(rgba)
    step = max(1, -(-max(a.shape[:2]) // ANALYSIS_SIDE))
    small = a[::step, ::step]
    rgb = small[..., :3].astype(np.int32)
    if small.shape[-1] == 4:
        alpha = small[..., 3:4].astype(np.int32)
        rgb = (rgb * alpha + 128 * (255 - alpha)) // 255
    dx = np.abs(np.diff(rgb, axis=1)).max(-1) <= FLAT_STEP
    dy = np.abs(np.diff(rgb, axis=0)).max(-1) <= FLAT_STEP
    flat = np.ones(rgb.shape[:2], bool)
    flat[:, 1:] &= dx
    flat[:, :-1] &= dx
    flat[1:, :] &= dy
    flat[:-1, :] &= dy
    q = rgb >> 4
    codes = (q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]).ravel()
    counts = np.sort(np.bincount(codes, minlength=4096))[::-1]
    colours = int(np.searchsorted(np.cumsum(counts), COVERAGE * codes.size) + 1)
    return SceneStats(float(flat.mean()), colours)


def notice_for(model_source: str, picture: np.ndarray | None) -> str | None:
    """The notice to show before Run, or None."""
    if (model_source or DEMO_ID) != DEMO_ID or picture is None or picture.size == 0:
        return None
    return None if scene_stats(picture).shapes_like else NOTICE
