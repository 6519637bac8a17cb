"""Write the diffusers-layout component configs that let a single-file SD 2.x or SDXL checkpoint load
offline (as resources/configs/stable-diffusion-v1-5 does for SD 1.x), and check them.

    python -m tools.make_family_configs [--check]

The values are those of the original LDM/SGM configs (Stability AI's v2-inference-v.yaml and
sd_xl_base.yaml) expressed the way diffusers' own conversion (`create_unet_diffusers_config_from_ldm`)
expresses them; the text encoders are OpenCLIP ViT-H/14 (SD 2.x, 23 of 24 layers: the penultimate
layer is its output) and CLIP ViT-L/14 + OpenCLIP ViT-bigG/14 with projection (SDXL). `--check`
builds every component on the meta device and compares its parameter count with the published
model's, so a wrong value cannot slip in unnoticed. No tokenizer files are written: every family
uses the same CLIP BPE vocabulary (resources/tokenizer/clip); core/families.py loads it with the
family's padding token ("!" for SD 2.x and SDXL's second encoder) and hands it to the loader."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from resources import resource_path

SD15 = resource_path("configs", "stable-diffusion-v1-5")
OUT = {"sd2": resource_path("configs", "stable-diffusion-2-1"),
       "sdxl": resource_path("configs", "stable-diffusion-xl-base-1.0")}

# Published parameter counts (diffusers components of the released weights).
EXPECTED = {
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
}

SCHEDULER = {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
             "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None}

VAE = {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
       "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
       "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
       "up_block_types": ["UpDecoderBlock2D"] * 4}

SD2_UNET = {"_class_name": "UNet2DConditionModel", "sample_size": 96, "in_channels": 4, "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
            "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
            "upcast_attention": True}

SDXL_UNET = {"_class_name": "UNet2DConditionModel", "sample_size": 128, "in_channels": 4, "out_channels": 4,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "cross_attention_dim": 2048,
             "attention_head_dim": [5, 10, 20], "use_linear_projection": True,
             "transformer_layers_per_block": [1, 2, 10], "addition_embed_type": "text_time",
             "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816}

CLIP_L = json.loads((SD15 / "text_encoder" / "config.json").read_text())
OPENCLIP_H = dict(CLIP_L, hidden_act="gelu", hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                  num_hidden_layers=23, projection_dim=512)
OPENCLIP_BIGG = dict(CLIP_L, architectures=["CLIPTextModelWithProjection"], hidden_act="gelu", hidden_size=1280,
                     intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32, projection_dim=1280)


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write() -> None:
    sd2 = OUT["sd2"]
    _write(sd2 / "model_index.json", {"_class_name": "StableDiffusionPipeline", "feature_extractor": [None, None],
                                      "requires_safety_checker": False, "safety_checker": [None, None],
                                      "scheduler": ["diffusers", "DDIMScheduler"],
                                      "text_encoder": ["transformers", "CLIPTextModel"],
                                      "tokenizer": ["transformers", "CLIPTokenizer"],
                                      "unet": ["diffusers", "UNet2DConditionModel"],
                                      "vae": ["diffusers", "AutoencoderKL"]})
    _write(sd2 / "unet" / "config.json", SD2_UNET)
    _write(sd2 / "vae" / "config.json", dict(VAE, sample_size=768, scaling_factor=0.18215))
    _write(sd2 / "text_encoder" / "config.json", OPENCLIP_H)
    _write(sd2 / "scheduler" / "scheduler_config.json", dict(SCHEDULER, prediction_type="v_prediction"))

    xl = OUT["sdxl"]
    _write(xl / "model_index.json", {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
                                     "scheduler": ["diffusers", "DDIMScheduler"],
                                     "text_encoder": ["transformers", "CLIPTextModel"],
                                     "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                                     "tokenizer": ["transformers", "CLIPTokenizer"],
                                     "tokenizer_2": ["transformers", "CLIPTokenizer"],
                                     "unet": ["diffusers", "UNet2DConditionModel"],
                                     "vae": ["diffusers", "AutoencoderKL"]})
    _write(xl / "unet" / "config.json", SDXL_UNET)
    # SDXL's VAE overflows in fp16: force_upcast tells loaders to decode in fp32 (core/models.py does).
    _write(xl / "vae" / "config.json", dict(VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True))
    _write(xl / "text_encoder" / "config.json", CLIP_L)
    _write(xl / "text_encoder_2" / "config.json", OPENCLIP_BIGG)
    _write(xl / "scheduler" / "scheduler_config.json", dict(SCHEDULER, prediction_type="epsilon"))


def build_meta(folder: Path) -> dict:
    """Every component the config folder describes, on the meta device (no memory)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        parts = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet")),
                 "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae")),
                 "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))}
        if (folder / "text_encoder_2").is_dir():
            parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    return parts


def check() -> dict:
    """Parameter counts on the meta device against EXPECTED; raises on any difference."""
    counts = {}
    for family, folder in OUT.items():
        parts = build_meta(folder)
        counts[family] = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        wrong = {k: (v, EXPECTED[family][k]) for k, v in counts[family].items() if v != EXPECTED[family][k]}
        if wrong:
            raise SystemExit(f"{family}: parameter counts differ from the published model: {wrong}")
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check the shipped configs")
    args = ap.parse_args(argv)
    if not args.check:
        write()
    print(json.dumps(check(), indent=2))


if __name__ == "__main__":
    main()
