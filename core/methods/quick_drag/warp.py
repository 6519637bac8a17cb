"""The one-step latent warp behind instant drag (after FastDrag, Zhao et al., NeurIPS 2024), and the
hole filling that follows it.

A displacement field pulls the content at each handle to its target: inside a disc (the region),
every cell C moves by phi(C) * (target - handle), where phi is 1 near the handle and falls to 0 at
the disc's edge along the ray from the handle through C, so the picture stretches between the moved
part and the still edge instead of tearing. With several handles the per-handle moves are blended
with weights 1 / |C - handle| (each handle dominates near itself). Cells are moved whole (nearest
neighbour, never blended: a noisy latent keeps its noise statistics); where two cells land on the
same place, the one that moved further wins (the dragged content lies on top of what it covers);
places no cell lands on are holes, filled from the nearest intact cell left, right, above and below,
weighted by one over the distance (bilateral nearest-neighbour interpolation).

Coordinates are (x, y) in grid cells, cell k's centre at k. Everything here is dimensionless or in
cells of the grid it is given, so it behaves the same on a 16x16 demo latent as on SD's 64x64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_NEAR = 1e-4  # keeps the inverse-distance weight finite at a handle itself


@dataclass(frozen=True)
class Disc:
    """The region that moves: the disc of radius `r` around (cx, cy), in grid cells."""

    cx: float
    cy: float
    r: float


def disc_around_mask(mask: torch.Tensor, points: torch.Tensor) -> Disc:
    """FastDrag's region: the circle through the corners of the editable mask's bounding box, grown
    where needed so that every point (handles and targets) lies a cell inside it."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        raise ValueError("the mask has no editable cell")
    x0, x1, y0, y1 = (float(v) for v in (xs.min(), xs.max(), ys.min(), ys.max()))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # +1: the box's corner cells sit a cell inside the edge, so even they move a little.
    r = math.hypot(x1 - x0, y1 - y0) / 2 + 1.0
    return _holding(Disc(cx, cy, r), points)


def disc_around_points(handles: torch.Tensor, targets: torch.Tensor, margin: float) -> Disc:
    """Without a mask: the circle around every handle and target, widened by `margin` times the
    longest drag, so the part that moves grows with how far it is dragged."""
    pts = torch.cat([handles, targets])
    lo, hi = pts.min(dim=0).values, pts.max(dim=0).values
    cx, cy = float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2
    longest = float((targets - handles).norm(dim=1).max())
    r = float((hi - lo).norm()) / 2 + margin * longest + 1.0
    return _holding(Disc(cx, cy, r), pts)


def _holding(disc: Disc, points: torch.Tensor) -> Disc:
    centre = torch.tensor([disc.cx, disc.cy], dtype=points.dtype, device=points.device)
    need = float((points - centre).norm(dim=1).max()) + 1.0
    return Disc(disc.cx, disc.cy, max(disc.r, need))


def cell_centres(h: int, w: int, device=None) -> torch.Tensor:
    """[h,w,2] (x, y) of every cell."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def stretch_factor(cells: torch.Tensor, handle: torch.Tensor, disc: Disc, falloff: float) -> torch.Tensor:
    """phi for one handle, [h,w]: u = |AC| / |AP|, with A the handle, C the cell and P where the ray
    from A through C leaves the disc; phi = clamp((1 - u) / falloff, 0, 1). falloff 1 is FastDrag's
    linear stretch over the whole ray; smaller values carry the inner (1 - falloff) of every ray
    rigidly with the handle and stretch only the outer part. 0 outside the disc."""
    centre = torch.tensor([disc.cx, disc.cy], dtype=cells.dtype, device=cells.device)
    v = cells - handle                                   # A -> C
    dist = v.norm(dim=-1)
    e = v / dist.clamp_min(_NEAR)[..., None]
    a = handle - centre                                  # O -> A, |a| < r (the disc holds every handle)
    b = (e * a).sum(dim=-1)
    ray = -b + torch.sqrt((b * b - float(a @ a) + disc.r ** 2).clamp_min(0.0))   # |AP|
    u = dist / ray.clamp_min(_NEAR)
    return ((1.0 - u) / falloff).clamp(0.0, 1.0)


def displacement_field(hw: tuple[int, int], handles: torch.Tensor, targets: torch.Tensor, disc: Disc,
                       falloff: float) -> torch.Tensor:
    """[h,w,2] (dx, dy) in cells: sum_i w_i phi_i (target_i - handle_i) / sum_i w_i, w_i = 1/|C - A_i|."""
    cells = cell_centres(*hw, device=handles.device)
    num = torch.zeros_like(cells)
    den = torch.zeros(hw, dtype=cells.dtype, device=cells.device)
    for a, g in zip(handles.float(), targets.float()):
        w = 1.0 / ((cells - a).norm(dim=-1) + _NEAR)
        num += (w * stretch_factor(cells, a, disc, falloff))[..., None] * (g - a)
        den += w
    return num / den[..., None]


@dataclass
class WarpPlan:
    """Where every cell of the warped grid takes its value from: `source[k]` is the flat index of
    the cell whose value lands on cell k (its own index where nothing moved), or -1 for a hole."""

    hw: tuple[int, int]
    source: torch.Tensor          # [h*w] int64
    moved: torch.Tensor           # [h,w] bool: cells that received another cell's value

    @property
    def holes(self) -> torch.Tensor:
        return (self.source < 0).view(self.hw)

    def move(self, x: torch.Tensor) -> torch.Tensor:
        """Warp [B,C,h,w] without filling: holes keep x's own value."""
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        out = flat[..., self.source.clamp_min(0)].reshape(x.shape)
        return torch.where(self.holes, x, out)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Warp [B,C,h,w] and fill its holes. Cells nobody reaches on any side keep their value."""
        return fill_holes(self.move(x), self.holes)


def plan_warp(field: torch.Tensor, movable: torch.Tensor | None = None) -> WarpPlan:
    """Forward-map every cell C to the cell nearest C + field(C). `movable` [h,w] bool (default: all) marks the
    cells that may move and be moved onto; cells outside it keep their own value. Content that would
    land off the grid or outside `movable` is dropped. Where several cells land on one, the one with
    the longest move wins (ties: the later cell in raster order), so the result is deterministic."""
    h, w = field.shape[:2]
    n = h * w
    device = field.device
    if movable is None:
        movable = torch.ones((h, w), dtype=torch.bool, device=device)
    cells = cell_centres(h, w, device=device)
    # floor(x + 0.5), not round(): round-half-to-even would map two neighbours shifted by k + 0.5
    # onto one cell, so a plain translation would tear.
    dest = torch.floor(cells + field + 0.5).long()
    dx, dy = dest[..., 0], dest[..., 1]
    inside = (dx >= 0) & (dx < w) & (dy >= 0) & (dy < h)
    dest_flat = (dy.clamp(0, h - 1) * w + dx.clamp(0, w - 1)).reshape(-1)
    ok = (inside & movable).reshape(-1)
    ok &= movable.reshape(-1)[dest_flat]
    # Rank the moves by length (stable: raster order breaks ties), then let the highest rank win each
    # destination; scatter_reduce "amax" on unique ranks is deterministic on every device.
    length = field.norm(dim=-1).reshape(-1)
    order = torch.argsort(length, stable=True)
    rank = torch.empty(n, dtype=torch.long, device=device)
    rank[order] = torch.arange(n, device=device)
    best = torch.full((n,), -1, dtype=torch.long, device=device)
    best = best.scatter_reduce(0, dest_flat[ok], rank[ok], reduce="amax", include_self=True)
    source = torch.where(best >= 0, order[best.clamp_min(0)], best)
    fixed = ~movable.reshape(-1)
    own = torch.arange(n, device=device)
    source = torch.where(fixed, own, source)
    moved = ((source >= 0) & (source != own)).view(h, w)
    return WarpPlan((h, w), source, moved)


def fill_holes(x: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """Fill the hole cells of x [B,C,h,w] from the nearest non-hole cell to the left, right, above and
    below, weighted by 1 / distance. A hole with no intact cell on any of its four lines keeps its
    value."""
    if not bool(holes.any()):
        return x
    h, w = holes.shape
    valid = ~holes
    col = torch.arange(w, device=x.device).expand(h, w)
    row = torch.arange(h, device=x.device)[:, None].expand(h, w)
    left = torch.where(valid, col, -1).cummax(dim=1).values
    right = torch.where(valid, col, w).flip(1).cummin(dim=1).values.flip(1)
    up = torch.where(valid, row, -1).cummax(dim=0).values
    down = torch.where(valid, row, h).flip(0).cummin(dim=0).values.flip(0)
    total = torch.zeros_like(x)
    weight = torch.zeros((h, w), dtype=x.dtype, device=x.device)
    for idx, along_x, exists in ((left, True, left >= 0), (right, True, right < w),
                                 (up, False, up >= 0), (down, False, down < h)):
        idx_c = idx.clamp(0, (w if along_x else h) - 1)
        dist = (idx - (col if along_x else row)).abs().clamp_min(1).to(x.dtype)
        wgt = torch.where(exists, 1.0 / dist, torch.zeros_like(dist))
        flat = (row * w + idx_c) if along_x else (idx_c * w + col)
        values = x.reshape(x.shape[0], x.shape[1], -1)[..., flat.reshape(-1)].reshape(x.shape)
        total += values * wgt
        weight += wgt
    filled = total / weight.clamp_min(1e-12)
    use = holes & (weight > 0)
    return torch.where(use, filled, x)
