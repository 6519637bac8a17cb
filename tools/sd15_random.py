"""The real Stable Diffusion 1.5 architecture with random weights, built from the shipped configs.

Benchmarks use it: same shapes, same cost as the real model, no download. On device="meta" it is
built instantly without memory (parameter counts, shape checks)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from core.models import SD15_CONFIG_DIR, DiffusionModel


def build_random_sd15(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
                      config_dir: Path = SD15_CONFIG_DIR) -> DiffusionModel:
    """UNet, VAE and text encoder of SD 1.5 with seeded random weights, created directly on `device`
    (so a GPU initialises them itself instead of copying 1 B parameters from the CPU)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    device = torch.device(device)
    config_dir = Path(config_dir)
    if device.type != "meta":
        torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir, subfolder="vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder"))
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False).eval()
        if dtype != torch.float32:
            m.to(dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(config_dir / "tokenizer")
    sched = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
    return DiffusionModel("sd15-random", unet, vae, text_encoder, tokenizer, sched, device, dtype, config_dir)


def parameter_counts(model: DiffusionModel) -> dict[str, int]:
    return {name: sum(p.numel() for p in getattr(model, name).parameters())
            for name in ("unet", "vae", "text_encoder")}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Build random-weight SD 1.5 and print its parameter counts.")
    ap.add_argument("--device", default="meta")
    args = ap.parse_args()
    print(json.dumps(parameter_counts(build_random_sd15(args.device))))
