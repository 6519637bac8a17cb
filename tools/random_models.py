"""The real Stable Diffusion architectures (1.5, 2.1, XL) with random weights, built from the
shipped configs.

Benchmarks use them: same shapes, same cost as the real model, no download. On device="meta" they
are built instantly without memory (parameter counts, shape checks).

    python -m tools.random_models [--family sd1|sd2|sdxl] [--device meta]"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from core.families import FAMILIES, get_family, load_tokenizer
from core.models import DiffusionModel, _finish

SD15_PARTS = ("unet", "vae", "text_encoder")


def build_random(family: str = "sd1", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 seed: int = 0, config_dir: Optional[Path] = None) -> DiffusionModel:
    """UNet, VAE and text encoder(s) of `family` with seeded random weights, created directly on
    `device` (so a GPU initialises them itself instead of copying billions of parameters)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    fam = get_family(family)
    device = torch.device(device)
    config_dir = Path(config_dir or fam.config_dir)
    if device.type != "meta":
        torch.manual_seed(seed)
    extra = {}
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir, subfolder="vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder"))
        if fam.text_encoders == 2:
            extra["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(config_dir / "text_encoder_2"))
    if fam.text_encoders == 2:
        extra.update(tokenizer_2=load_tokenizer(fam.pad_tokens[1]), zero_empty_prompt=True)
    sched = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
    if device.type == "meta":  # _finish would try to move meta tensors; nothing runs on meta anyway
        for m in (unet, vae, text_encoder, *[v for k, v in extra.items() if k == "text_encoder_2"]):
            m.requires_grad_(False).eval()
        return DiffusionModel(f"{family}-random", unet, vae, text_encoder, load_tokenizer(fam.pad_tokens[0]), sched,
                              device, dtype, config_dir, family=fam.name,
                              **{k: v for k, v in extra.items()})
    return _finish(f"{family}-random", unet, vae, text_encoder, load_tokenizer(fam.pad_tokens[0]), sched, device,
                   dtype, config_dir, family=fam.name, **extra)


def build_random_sd15(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
                      config_dir: Optional[Path] = None) -> DiffusionModel:
    return build_random("sd1", device, dtype, seed, config_dir)


def parameter_counts(model: DiffusionModel) -> dict[str, int]:
    parts = SD15_PARTS + (("text_encoder_2",) if model.text_encoder_2 is not None else ())
    return {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in parts}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Build a random-weight model of a family and print its parameter counts.")
    ap.add_argument("--family", default="sd1", choices=list(FAMILIES))
    ap.add_argument("--device", default="meta")
    args = ap.parse_args()
    print(json.dumps(parameter_counts(build_random(args.family, args.device))))
