"""Finding UNet blocks by their position, so methods specified on SD 1.x's decoder work on any
UNet shape (the demo model, SD 2.x): decoder layers are numbered in order, resnet by resnet."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

SD1_DECODER_LAYERS = 12  # 4 up blocks x 3 resnets


@dataclass(frozen=True)
class DecoderLayer:
    index: int                 # 0 = first (lowest resolution) decoder layer
    block: int                 # up_blocks[block]
    sub: int                   # resnets[sub] / attentions[sub]
    resnet: torch.nn.Module
    attention_prefix: Optional[str]  # "up_blocks.B.attentions.S" or None for blocks without attention


def decoder_layers(unet) -> list[DecoderLayer]:
    out = []
    for b, block in enumerate(unet.up_blocks):
        attns = getattr(block, "attentions", None)
        for s, resnet in enumerate(block.resnets):
            prefix = f"up_blocks.{b}.attentions.{s}" if attns is not None and s < len(attns) else None
            out.append(DecoderLayer(len(out), b, s, resnet, prefix))
    return out


def corresponding_index(sd1_index: int, n_layers: int, sd1_total: int = SD1_DECODER_LAYERS) -> int:
    """The decoder layer at the same relative depth as SD 1.x's layer `sd1_index`."""
    if n_layers == sd1_total:
        return sd1_index
    return min(n_layers - 1, max(0, round(sd1_index * (n_layers - 1) / (sd1_total - 1))))


def up_block_for_sd1(unet, sd1_block: int, sd1_blocks: int = 4) -> int:
    """The up block at the same relative depth as SD 1.x's `up_blocks[sd1_block]`."""
    n = len(unet.up_blocks)
    if n == sd1_blocks:
        return sd1_block
    return min(n - 1, max(0, round(sd1_block * (n - 1) / (sd1_blocks - 1))))


@contextlib.contextmanager
def forward_hook(module: torch.nn.Module, fn: Callable) -> Iterator[None]:
    """Run `fn(module, inputs, output)` after `module`'s forward; a non-None return replaces the output."""
    handle = module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()
