"""What the UNet is conditioned on, as one object: the prompt embeddings cross-attention reads, and
for SDXL the pooled text embedding (its "added conditioning"; the size/crop time ids are derived
from the latent's size by core.unet_calls). Methods combine branches with these operations instead
of concatenating raw tensors, so every family goes through the same code."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

Index = Union[int, slice, Sequence[int], torch.Tensor]


@dataclass(frozen=True)
class Conditioning:
    embeds: torch.Tensor                  # [B, L, D] prompt embeddings (cross-attention keys/values)
    pooled: Optional[torch.Tensor] = None  # [B, P] pooled text embedding (SDXL), else None

    # ---- shape -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.embeds.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.embeds.shape

    @property
    def device(self) -> torch.device:
        return self.embeds.device

    # ---- combining branches ----------------------------------------------------------------------------
    @staticmethod
    def cat(items: Sequence["Conditioning"]) -> "Conditioning":
        """Rows of several conditionings in one batch (the branches of one UNet call)."""
        items = list(items)
        pooled = None
        if items[0].pooled is not None:
            pooled = torch.cat([c.pooled for c in items])
        return Conditioning(torch.cat([c.embeds for c in items]), pooled)

    def expand(self, n: int, *keep: int) -> "Conditioning":
        """A batch of `n` rows from a one-row conditioning (views, no copy). `expand(n, -1, -1)`,
        the tensor spelling, is accepted too."""
        if any(k != -1 for k in keep):
            raise ValueError("Conditioning.expand only repeats rows: the other sizes must be -1")
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot expand {len(self)} rows to {n}")
        return Conditioning(self.embeds.expand(n, -1, -1),
                            None if self.pooled is None else self.pooled.expand(n, -1))

    def repeat(self, n: int) -> "Conditioning":
        """Every row repeated n times in order (rows a, b -> a, a, b, b for n = 2)."""
        return Conditioning(self.embeds.repeat_interleave(n, 0),
                            None if self.pooled is None else self.pooled.repeat_interleave(n, 0))

    def chunk(self, n: int) -> tuple["Conditioning", ...]:
        embeds = self.embeds.chunk(n)
        pooled = self.pooled.chunk(n) if self.pooled is not None else (None,) * len(embeds)
        return tuple(Conditioning(e, p) for e, p in zip(embeds, pooled))

    def __getitem__(self, index: Index) -> "Conditioning":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Conditioning(self.embeds[index], None if self.pooled is None else self.pooled[index])

    # ---- arithmetic on the text side (edit directions) ----------------------------------------------------
    def __add__(self, other: "Conditioning") -> "Conditioning":
        """Add a direction (pix2pix-zero's Δc): embeddings and pooled embedding alike."""
        pooled = self.pooled
        if pooled is not None and other.pooled is not None:
            pooled = pooled + other.pooled.to(pooled)
        return Conditioning(self.embeds + other.embeds.to(self.embeds), pooled)

    def __sub__(self, other: "Conditioning") -> "Conditioning":
        pooled = None
        if self.pooled is not None and other.pooled is not None:
            pooled = self.pooled - other.pooled.to(self.pooled)
        return Conditioning(self.embeds - other.embeds.to(self.embeds), pooled)

    def scaled(self, k: float) -> "Conditioning":
        """A direction times a number (pix2pix-zero's edit multiplier): embeddings and pooled alike."""
        return Conditioning(self.embeds * k, None if self.pooled is None else self.pooled * k)

    def with_embeds(self, embeds: torch.Tensor) -> "Conditioning":
        """The same conditioning with other prompt embeddings (a learned value embedding, a mix)."""
        pooled = self.pooled
        if pooled is not None and pooled.shape[0] != embeds.shape[0]:
            pooled = pooled.expand(embeds.shape[0], -1) if pooled.shape[0] == 1 else pooled
        return Conditioning(embeds, pooled)

    # ---- dtype and device ----------------------------------------------------------------------------------
    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "Conditioning":
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return Conditioning(move(self.embeds), move(self.pooled))

    def float(self) -> "Conditioning":
        return self.to(dtype=torch.float32)

    def detach(self) -> "Conditioning":
        return Conditioning(self.embeds.detach(), None if self.pooled is None else self.pooled.detach())


def as_conditioning(c: Union[Conditioning, torch.Tensor]) -> Conditioning:
    """Callers may still pass raw prompt embeddings (tests, one-encoder models)."""
    return c if isinstance(c, Conditioning) else Conditioning(c)
