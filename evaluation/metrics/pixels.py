"""Pixel measures between two RGB uint8 pictures of one size, over a region (bool HxW, True =
counted; None = the whole picture). Values are on 0..255 (PSNR, SSIM) or 0..1 (MSE), as PIE-Bench
and DragBench compute them; an empty region gives None."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5   # Wang et al.'s Gaussian window
SSIM_RADIUS = 5    # 11x11
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _region(a: np.ndarray, region: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if region is None:
        return np.ones(a.shape[:2], bool)
    return region if region.any() else None


def mse(a: np.ndarray, b: np.ndarray, region: Optional[np.ndarray] = None) -> Optional[float]:
    """Mean squared error on 0..1 pixels (PIE-Bench prints it x 10^4)."""
    r = _region(a, region)
    if r is None:
        return None
    d = (a.astype(np.float64) - b.astype(np.float64))[r] / 255.0
    return float((d ** 2).mean())


def psnr(a: np.ndarray, b: np.ndarray, region: Optional[np.ndarray] = None) -> Optional[float]:
    """dB on 0..255; +inf for identical pixels (the caller writes it as null with a flag)."""
    m = mse(a, b, region)
    if m is None:
        return None
    return math.inf if m == 0 else float(10 * math.log10(1.0 / m))


def _gaussian_window() -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (HxW, mean over channels): Gaussian 11x11 window, sigma 1.5, on 0..255,
    the picture's edges reflected."""
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[:, None]  # [3,1,H,W]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[:, None]
    g = _gaussian_window()
    pad = min(SSIM_RADIUS, x.shape[-1] - 1, x.shape[-2] - 1)

    def blur(t):
        t = F.pad(t, (pad, pad, pad, pad), mode="reflect") if pad > 0 else t
        t = F.conv2d(t, g.view(1, 1, 1, -1)[..., SSIM_RADIUS - pad:SSIM_RADIUS + pad + 1])
        return F.conv2d(t, g.view(1, 1, -1, 1)[..., SSIM_RADIUS - pad:SSIM_RADIUS + pad + 1, :])

    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx ** 2
    syy = blur(y * y) - my ** 2
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s[:, 0].mean(0).numpy()


def ssim(a: np.ndarray, b: np.ndarray, region: Optional[np.ndarray] = None) -> Optional[float]:
    """SSIM averaged over the region's pixels, with what lies outside the region blacked out in both
    pictures first (as PIE-Bench does), so that a window at the region's edge does not see the edit."""
    r = _region(a, region)
    if r is None:
        return None
    keep = r[..., None].astype(a.dtype)
    return float(ssim_map(a * keep, b * keep)[r].mean())
