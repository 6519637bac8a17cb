"""Which UNet layers a method names, per model family.

The papers name SD 1.x layers (diffusers names below). SD 2.x has the same UNet layout, so the
same names. SDXL has three resolution levels instead of four (no attention at the highest one,
10 transformer layers at the lowest), and no published port of PnP or DragDiffusion names its
layers; we choose the SDXL layers that sit at the *same latent resolution* as the SD 1.x ones —
the property the methods rely on (PnP's 16x16-of-64 features carry layout without texture;
drag supervises at full latent resolution). These choices are written down here, not measured:
no SDXL weights have been available to the project (see the README's model-family section).

UNets of any other layout (the embedded demo, tiny test models) get no map: the methods then pick
the layers at the same relative depth of the decoder (core/unet_layout.py), which keeps small
models from being supervised at 4x4 pixels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class LayerMap:
    pnp_feature: tuple[int, int]          # (up block, resnet) whose residual branch PnP injects
    pnp_attention: frozenset              # {(up block, attention index)} whose attn1 q/k PnP injects
    drag_feature_block: int               # up block whose output supervises drag's motion
    drag_reference_blocks: frozenset      # up blocks whose self-attention reads the reference K/V


SD1_MAP = LayerMap(
    pnp_feature=(1, 1),  # decoder layer 4 (latent /4)
    pnp_attention=frozenset({(1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)}),  # layers 4-11
    drag_feature_block=2,  # 640 channels, output at full latent resolution
    drag_reference_blocks=frozenset({2, 3}),  # the two highest-resolution decoder levels
)

SDXL_MAP = LayerMap(
    pnp_feature=(0, 1),  # latent /4, second resnet: where SD 1.x's layer 4 sits
    pnp_attention=frozenset({(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}),  # /4 from the 2nd on, all of /2
    drag_feature_block=1,  # 640 channels, output at full latent resolution (as SD 1.x up_blocks[2])
    drag_reference_blocks=frozenset({1}),  # the highest decoder level with self-attention
)

# The up-block layouts the maps are written for.
_SD1_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
_SDXL_UP = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")


def layer_map(model) -> Optional[LayerMap]:
    """The family's map when the model's UNet has the family's standard layout, else None."""
    cfg = model.unet.config
    up = tuple(cfg.up_block_types)
    standard_depth = cfg.layers_per_block == 2
    if model.family in ("sd1", "sd2") and up == _SD1_UP and standard_depth:
        return SD1_MAP
    if model.family == "sdxl" and up == _SDXL_UP and standard_depth:
        return SDXL_MAP
    return None
