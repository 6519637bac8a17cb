"""Colour transfer after image-guided DiffuseIT: the official image-guided command runs with
`--use_colormatch`, which maps the result's colours onto the style image's with the Monge-Kantorovich
linear transfer (MKL, Pitié & Kokaram 2007, via the color-matcher package's `method='mkl'`).

MKL moves the result's RGB distribution (mean μ_s, covariance Σ_s) onto the style's (μ_r, Σ_r) with
the linear map that moves each colour least:

    T = Σ_s^-1/2 (Σ_s^1/2 Σ_r Σ_s^1/2)^1/2 Σ_s^-1/2,      x' = (x − μ_s) T + μ_r

so the style's palette arrives while the structure (which pixel is lighter than which, edges) stays.
"""
from __future__ import annotations

from typing import Optional

import torch

EPS = 1e-6  # keeps a flat (near-singular) colour distribution invertible


def _sqrtm(m: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    vals = vals.clamp_min(EPS)
    d = vals.rsqrt() if inverse else vals.sqrt()
    return (vecs * d) @ vecs.T


def mkl_transfer(pix: torch.Tensor, style: torch.Tensor, where: Optional[torch.Tensor] = None) -> torch.Tensor:
    """pix [1,3,H,W] with its colours moved onto those of style [1,3,h,w] (any size). `where`
    ([1,1,H,W], 0..1) picks the pixels whose statistics are matched (e.g. the edited region); every
    pixel is mapped. Computed in float64; returns pix's dtype, unclamped."""
    x = pix[0].double().reshape(3, -1).T                           # [N,3]
    r = style[0].double().reshape(3, -1).T
    w = None if where is None else where[0, 0].double().reshape(-1) > 0.5
    xs = x if w is None or int(w.sum()) < 2 else x[w]
    mu_s, mu_r = xs.mean(0), r.mean(0)
    eye = torch.eye(3, dtype=torch.float64, device=x.device)
    cov_s = torch.cov(xs.T) + EPS * eye
    cov_r = torch.cov(r.T) + EPS * eye
    s_half = _sqrtm(cov_s)
    s_inv = _sqrtm(cov_s, inverse=True)
    t = s_inv @ _sqrtm(s_half @ cov_r @ s_half) @ s_inv
    out = (x - mu_s) @ t + mu_r
    return out.T.reshape(pix.shape[1:]).unsqueeze(0).to(pix.dtype)
