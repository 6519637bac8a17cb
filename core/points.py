"""Handle/target point pairs, shared by the methods that take them from the canvas (`drag`,
`quick-drag`): validation with one-line errors, and the conversion between input-image pixels and
a grid laid over the working canvas (a feature map, the latent)."""
from __future__ import annotations

import math

import torch

from .errors import InvalidInput


def check_point_pairs(points) -> None:
    """What a parameter check can say without the image: pairs exist, handles differ from targets,
    nothing is negative. (Whether a point lies on the image is checked against its size later.)"""
    if not points:
        raise InvalidInput("Add at least one handle/target point pair to drag.")
    for n, (hx, hy, tx, ty) in enumerate(points, 1):
        if (hx, hy) == (tx, ty):
            raise InvalidInput(f"Point pair {n}: the handle ({hx:g}, {hy:g}) equals its target; "
                               "move the target somewhere else.")
        if min(hx, hy, tx, ty) < 0:
            raise InvalidInput(f"Point pair {n} ({hx:g}, {hy:g} -> {tx:g}, {ty:g}) lies outside the "
                               "image: coordinates must not be negative.")


def points_to_grid(ctx, points, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-image pixel pairs -> (handles, targets) [N,2] (x, y) on a grid of `grid_hw` cells laid
    over the working canvas, after checking that every point lies on the image."""
    w, h = ctx.source.size
    gh, gw = grid_hw
    sx, sy = gw / ctx.place.work_w, gh / ctx.place.work_h
    handles, targets = [], []
    for n, (hx, hy, tx, ty) in enumerate(points, 1):
        for kind, x, y in (("handle", hx, hy), ("target", tx, ty)):
            if not (0 <= x < w and 0 <= y < h) or not (math.isfinite(x) and math.isfinite(y)):
                raise InvalidInput(f"Point pair {n}: the {kind} ({x:g}, {y:g}) lies outside the {w}x{h} "
                                   "image; place points on the picture.")
        wx, wy = ctx.to_work_xy(hx, hy)
        handles.append((wx * sx, wy * sy))
        wx, wy = ctx.to_work_xy(tx, ty)
        targets.append((wx * sx, wy * sy))
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=ctx.device)  # noqa: E731
    return as_tensor(handles), as_tensor(targets)


def grid_to_input(ctx, pts: torch.Tensor, grid_hw: tuple[int, int]) -> list[list[float]]:
    """[N,2] grid points -> input-image pixels, as JSON-ready lists."""
    gh, gw = grid_hw
    sx, sy = ctx.place.work_w / gw, ctx.place.work_h / gh
    return [[float(v) for v in ctx.to_input_xy(x * sx, y * sy)] for x, y in pts.tolist()]
