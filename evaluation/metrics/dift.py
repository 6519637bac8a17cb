"""DIFT-style Mean Distance (DragBench's MD): how far from its target each dragged handle landed.

As DragDiffusion's evaluation does with DIFT (Tang et al., 2023): the picture is encoded, noised to
t = 261 of 1000, passed once through the UNet with the sample's prompt, and the output of the
second decoder block (SD's up_ft_index 1; chosen by position on other UNets) is averaged over an
ensemble of noises (8). The handle's feature is read from the original picture; its new place is the
cosine argmax over the edited picture's feature map, bilinearly upsampled to the picture's pixels;
the distance to the target is in the input's pixels. DIFT runs SD 2.1; here the loaded model's own
UNet is used (or --dift-model), so numbers are comparable between methods on one model, not with
the papers' tables. Noises are seeded: the same picture always gives the same features."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.images import SourceImage, plan_working_size, to_working_tensor
from core.models import DiffusionModel
from core.schedule import DDIMSchedule
from core.unet_calls import unet_forward, vae_encode
from core.unet_layout import forward_hook, up_block_for_sd1

DIFT_T = 261
DIFT_ENSEMBLE = 8
DIFT_UP_BLOCK = 1    # SD 1.x/2.x up_blocks[1]
DIFT_SEED = 0
ROWS_PER_CHUNK = 64  # upsampled rows scored at once: bounded memory at 512 px and 1280 channels


@dataclass
class FeatureMap:
    features: torch.Tensor   # [C, h, w] on the working canvas's feature grid (float32, CPU)
    work_w: int
    work_h: int
    scale_x: float           # working px per input px
    scale_y: float
    width: int               # the input's size
    height: int

    def _grid(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Input pixel indices -> grid_sample coordinates at those pixels' centres."""
        gx = 2 * (xs + 0.5) * self.scale_x / self.work_w - 1
        gy = 2 * (ys + 0.5) * self.scale_y / self.work_h - 1
        return torch.stack([gx, gy], -1)

    def at(self, x: float, y: float) -> torch.Tensor:
        """The (bilinearly upsampled) feature at input pixel (x, y): [C]."""
        g = self._grid(torch.tensor([[float(x)]]), torch.tensor([[float(y)]]))[None]
        return F.grid_sample(self.features[None], g, mode="bilinear", align_corners=False)[0, :, 0, 0]

    def best_match(self, vec: torch.Tensor) -> tuple[int, int]:
        """The input pixel whose upsampled feature is most cosine-similar to `vec`."""
        v = F.normalize(vec, dim=0)
        best, where = -math.inf, (0, 0)
        xs = torch.arange(self.width, dtype=torch.float32)
        for y0 in range(0, self.height, ROWS_PER_CHUNK):
            ys = torch.arange(y0, min(self.height, y0 + ROWS_PER_CHUNK), dtype=torch.float32)
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            up = F.grid_sample(self.features[None], self._grid(xx, yy)[None], mode="bilinear",
                               align_corners=False)[0]                      # [C, rows, W]
            sim = torch.einsum("c,chw->hw", v, F.normalize(up, dim=0))
            k = int(sim.argmax())
            if float(sim.view(-1)[k]) > best:
                best, where = float(sim.view(-1)[k]), (k % self.width, y0 + k // self.width)
        return where


class DiftFeatures:
    def __init__(self, model: DiffusionModel, t: int = DIFT_T, ensemble: int = DIFT_ENSEMBLE,
                 seed: int = DIFT_SEED):
        self.model = model
        self.t = t
        self.ensemble = ensemble
        self.seed = seed
        self.alpha = DDIMSchedule(model.scheduler_config, 50).alpha(t)
        self.block = model.unet.up_blocks[up_block_for_sd1(model.unet, DIFT_UP_BLOCK)]

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, prompt: str) -> FeatureMap:
        m = self.model
        h, w = rgb.shape[:2]
        place = plan_working_size(w, h, m.native_size, m.grid)
        work = to_working_tensor(SourceImage(np.ascontiguousarray(rgb)), place).to(m.device)
        z = vae_encode(m, work)
        noise = torch.randn((self.ensemble, *z.shape[1:]), generator=torch.Generator("cpu").manual_seed(self.seed))
        x_t = self.alpha ** 0.5 * z + (1 - self.alpha) ** 0.5 * noise.to(z.device)
        emb = m.encode_text(prompt).expand(self.ensemble, -1, -1)
        captured = []
        with forward_hook(self.block, lambda _m, _i, out: captured.append(out)):
            unet_forward(m, x_t, self.t, emb)
        feats = captured[-1].float().mean(0).cpu()
        return FeatureMap(feats, place.work_w, place.work_h, place.inner_w / w, place.inner_h / h, w, h)


def mean_distance(source: FeatureMap, edited: FeatureMap, points: list) -> tuple[float, list]:
    """(mean over handles of |where the handle's feature landed - its target|, [landed x, y] per handle)."""
    dists, landed = [], []
    for hx, hy, tx, ty in points:
        x, y = edited.best_match(source.at(round(hx), round(hy)))
        landed.append([x, y])
        dists.append(math.hypot(x - tx, y - ty))
    return float(np.mean(dists)), landed


def initial_distance(points: list) -> float:
    return float(np.mean([math.hypot(tx - hx, ty - hy) for hx, hy, tx, ty in points]))
