"""Write the embedded demo model, resources/models/demo/, in diffusers layout.

    python -m tools.make_demo_model [--out resources/models/demo] [--seed 0]

A miniature of Stable Diffusion 1.x's shape, so that every method (which picks UNet blocks by
position) runs on it offline on a CPU in seconds: cross-attention down and up blocks, one plain
block at the lowest resolution, a VAE with 4 latent channels, a small CLIP text encoder using the
real CLIP tokenizer, the SD 1.x DDIM scheduler. Beside it: tiny CLIP (clip/) and DINO ViT (dino/)
encoders for the methods that need them, and latent_rgb.json, the linear latent -> RGB map the
live previews use. Weights are seeded random, stored in fp16 to keep the folder small; the loader
casts them to the working precision. The shipped demo is trained on ShapesWorld by
tools/train_demo.py, which reuses these configurations (with its own channel counts) and this
script's clip/ and dino/ encoders.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "models" / "demo"
TOKENIZER = ROOT / "resources" / "tokenizer" / "clip"
SCHEDULER = ROOT / "resources" / "configs" / "stable-diffusion-v1-5" / "scheduler" / "scheduler_config.json"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

TEXT_HIDDEN = 64
LATENT_SIZE = 16  # x VAE scale 4 = 64 px native working size

UNET_CONFIG = dict(
    sample_size=LATENT_SIZE,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    attention_head_dim=4,  # diffusers' name for the number of heads in SD 1.x configs
    cross_attention_dim=TEXT_HIDDEN,
    norm_num_groups=8,
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=LATENT_SIZE * 4,
)
TEXT_CONFIG = dict(
    vocab_size=49408,
    max_position_embeddings=77,
    hidden_size=TEXT_HIDDEN,
    intermediate_size=4 * TEXT_HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=4,
    hidden_act="quick_gelu",
    projection_dim=TEXT_HIDDEN,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)


def synthetic_images(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth colour fields with a few soft blobs: [n,3,size,size] in -1..1 (for fitting statistics)."""
    coarse = torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1
    img = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    for _ in range(3):
        c = torch.rand(n, 2, 1, 1, generator=gen)
        r = 0.05 + 0.2 * torch.rand(n, 1, 1, 1, generator=gen)
        colour = torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1
        d2 = (xx - c[:, :1]) ** 2 + (yy - c[:, 1:]) ** 2
        w = torch.exp(-d2 / (2 * r[:, 0:1] ** 2))
        img = img * (1 - w) + colour * w
    return img.clamp(-1, 1)


@torch.no_grad()
def fit_latent_statistics(vae, gen: torch.Generator) -> tuple[float, list, list]:
    """VAE scaling factor (unit-variance latents, as 0.18215 does for SD) and the least-squares linear
    map from scaled latents to the decoded image downsampled to latent size."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    images = synthetic_images(64, vae.config.sample_size, gen)
    raw = vae.encode(images).latent_dist.mean
    scaling_factor = float(1.0 / raw.std())
    latents = raw * scaling_factor
    decoded = vae.decode(raw).sample.clamp(-1, 1)
    target = torch.nn.functional.avg_pool2d(decoded, scale)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
    sol = torch.linalg.lstsq(x, y).solution  # [C+1, 3]
    factors = [[round(float(v), 6) for v in row] for row in sol[:-1]]
    bias = [round(float(v), 6) for v in sol[-1]]
    return round(scaling_factor, 6), factors, bias


def _canonical_text_encoder_keys(file: Path) -> None:
    """transformers >= 5.6 saves CLIPTextModel without the "text_model." level that hub checkpoints
    and older transformers use; store the canonical names so any version loads the file."""
    from safetensors.torch import load_file, save_file

    sd = load_file(file)
    save_file({k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}, file,
              metadata={"format": "pt"})


def _copy_tokenizer(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(TOKENIZER.iterdir()):
        shutil.copyfile(f, dest / f.name)


def build_clip(dest: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                hidden_act="quick_gelu")
    config = CLIPConfig(
        text_config=dict(tiny, vocab_size=49408, max_position_embeddings=77,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(tiny, image_size=64, patch_size=8),
        projection_dim=32,
    )
    model = CLIPModel(config).eval()
    model.half().save_pretrained(dest, safe_serialization=True)
    _copy_tokenizer(dest)
    (dest / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 64, "width": 64},
        "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
        "do_resize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "image_processor_type": "CLIPImageProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 64},
    }, indent=2) + "\n")


def build_dino(dest: Path) -> None:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=64, patch_size=8, qkv_bias=True)
    model = ViTModel(config, add_pooling_layer=False).eval()
    model.half().save_pretrained(dest, safe_serialization=True)
    (dest / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD, "image_processor_type": "ViTImageProcessor", "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": 64, "width": 64},
    }, indent=2) + "\n")


def build(out: Path, seed: int = 0) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval()

    scaling_factor, factors, bias = fit_latent_statistics(vae, torch.Generator().manual_seed(seed + 1))
    vae.register_to_config(scaling_factor=scaling_factor)

    unet.half().save_pretrained(out / "unet", safe_serialization=True)
    vae.half().save_pretrained(out / "vae", safe_serialization=True)
    text_encoder.half().save_pretrained(out / "text_encoder", safe_serialization=True)
    _canonical_text_encoder_keys(out / "text_encoder" / "model.safetensors")
    _copy_tokenizer(out / "tokenizer")
    (out / "scheduler").mkdir()
    shutil.copyfile(SCHEDULER, out / "scheduler" / "scheduler_config.json")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }, indent=2) + "\n")
    (out / "latent_rgb.json").write_text(json.dumps({
        "factors": factors, "bias": bias,
        "about": "scaled latents (x VAE scaling_factor) -> RGB in -1..1, least squares against the "
                 "decoded image downsampled to latent size",
    }, indent=2) + "\n")

    torch.manual_seed(seed + 2)
    build_clip(out / "clip")
    torch.manual_seed(seed + 3)
    build_dino(out / "dino")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    build(args.out, args.seed)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
