"""Reference attention, shared by the drag methods: in the self-attention of the decoder's
high-resolution levels, the edited branch attends to the keys and values of a reference branch (the
unedited picture), so what it draws keeps the picture's look (DragDiffusion's reference-latent
control, FastDrag's consistency-preserving step, MasaCtrl's mutual self-attention)."""
from __future__ import annotations

from typing import Optional

from .attention import AttentionHook, AttnCall
from .layer_maps import LayerMap
from .unet_layout import up_block_for_sd1


def reference_blocks(unet, lmap: Optional[LayerMap] = None) -> frozenset[int]:
    """The decoder's two highest-resolution levels (SD 1.x: up_blocks[2] and up_blocks[3]; SDXL:
    up_blocks[1], its highest level with self-attention)."""
    if lmap is not None:
        return lmap.drag_reference_blocks
    return frozenset({up_block_for_sd1(unet, 2), up_block_for_sd1(unet, 3)})


class ReferenceAttention(AttentionHook):
    """In the self-attention of the chosen up blocks, every branch of the batch attends to the keys
    and values of the reference branch (batch item `reference`)."""

    def __init__(self, blocks: frozenset[int], reference: int = 1):
        self.blocks = blocks
        self.reference = reference

    def applies(self, call: AttnCall) -> bool:
        return call.layer.place == "up" and call.layer.kind == "attn1" and call.layer.block in self.blocks

    def qkv(self, call, q, k, v):
        r = self.reference
        return q, k[r:r + 1].expand_as(k), v[r:r + 1].expand_as(v)
