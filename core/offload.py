"""Low-VRAM mode: fit the model in a smaller GPU by trading time for memory, without breaking
the backward passes drag, pix2pix-zero, StyleDiffusion and DiffuseIT need.

- The text encoders (1.6 GB for SDXL in fp16, 0.25 GB for SD 1.5) live on the CPU and visit the
  GPU only while they encode; no gradient ever flows through them, so moving them is safe.
- The UNet stays resident (it is in every pass) and recomputes its activations in the backward
  pass instead of keeping them (gradient checkpointing): the largest cost of drag's LoRA and latent
  optimisation and of guided sampling. Inference passes are unchanged.
- The VAE decodes and encodes in tiles above its native size (a 1024 px SD 1.5 canvas, a 2048 px
  SDXL one): its activations, not its weights, are what overflow small cards.

Block-level weight offloading of the UNet (diffusers' group offloading) would save more, but it
swaps parameters out after each forward, which the backward passes above then find on the wrong
device; it is not used. Peak memory with and without the mode: `tools/bench.py --low-vram`."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def enable_low_vram(model) -> None:
    model.low_vram = True
    if hasattr(model.unet, "enable_gradient_checkpointing"):
        model.unet.enable_gradient_checkpointing()
    if hasattr(model.vae, "enable_tiling"):
        model.vae.enable_tiling()
    for encoder in text_encoders(model):
        encoder.to("cpu")


def text_encoders(model) -> list[torch.nn.Module]:
    return [e for e in (model.text_encoder, getattr(model, "text_encoder_2", None)) if e is not None]


@contextlib.contextmanager
def encoders_on_device(model) -> Iterator[None]:
    """In low-VRAM mode, the text encoders on the model's device for the duration (then back)."""
    if not getattr(model, "low_vram", False) or model.device.type == "cpu":
        yield
        return
    encoders = text_encoders(model)
    for e in encoders:
        e.to(model.device)
    try:
        yield
    finally:
        for e in encoders:
            e.to("cpu")
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
