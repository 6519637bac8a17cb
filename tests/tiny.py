"""Tiny diffusion models built in-process for tests: same code paths as SD 1.x, milliseconds a pass."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from core.models import DiffusionModel, _finish
from tools.build_tokenizer_files import bytes_to_unicode

SCHEDULER = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "clip_sample": False,
             "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon"}


def write_char_tokenizer(folder: Path) -> Path:
    """A CLIP BPE tokenizer without merges (one token per character): tiny, real code path."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def build_tiny_components(seed: int = 0, sample_size: int = 16):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=8, sample_size=sample_size * 2)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=77, bos_token_id=512,
                                        eos_token_id=513, pad_token_id=513))
    return unet, vae, text


def build_tiny_model(tmp: Path, seed: int = 0, sample_size: int = 16) -> DiffusionModel:
    from transformers import CLIPTokenizer

    unet, vae, text = build_tiny_components(seed, sample_size)
    tok = CLIPTokenizer.from_pretrained(write_char_tokenizer(tmp / "tokenizer"))
    return _finish("tiny", unet, vae, text, tok, dict(SCHEDULER), torch.device("cpu"), torch.float32, None)


def save_tiny_model(folder: Path, seed: int = 0, sample_size: int = 16) -> Path:
    """The tiny model in diffusers layout, as a user's local model folder would be."""
    unet, vae, text = build_tiny_components(seed, sample_size)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    tok = write_char_tokenizer(folder / "tokenizer")
    (tok / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


# ---- tiny models of the other families (same code paths as SD 2.x and SDXL) ----------------------

V_SCHEDULER = dict(SCHEDULER, prediction_type="v_prediction")


def build_tiny_family_components(family: str, seed: int = 0, vocab_size: int = 514, sample_size: int = 16):
    """UNet, VAE and text encoder(s) shaped like `family` ("sd2": one 48-wide encoder read by a
    linear-projection UNet; "sdxl": SDXL's block layout — no attention at the highest resolution,
    two transformer layers deeper down —, two encoders side by side and added text/time
    conditioning)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    text = dict(vocab_size=vocab_size, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                pad_token_id=vocab_size - 1, hidden_act="gelu")
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=8, sample_size=sample_size * 2,
                        scaling_factor=0.13025 if family == "sdxl" else 0.18215)
    if family == "sd2":
        unet = UNet2DConditionModel(
            sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=48, attention_head_dim=(4, 8, 8), use_linear_projection=True, norm_num_groups=8)
        return unet, vae, CLIPTextModel(CLIPTextConfig(hidden_size=48, **text)), None
    if family != "sdxl":
        raise ValueError(family)
    pooled = 16
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), cross_attention_dim=32 + 48, attention_head_dim=(4, 8, 8),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=pooled + 6 * 8, norm_num_groups=8)
    # Two widths, as in SDXL (768 and 1280): diffusers tells the encoders of a single file apart by it.
    te1 = CLIPTextModel(CLIPTextConfig(hidden_size=32, **text))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=48, projection_dim=pooled, **text))
    return unet, vae, te1, te2


def build_tiny_family_model(tmp: Path, family: str, seed: int = 0) -> DiffusionModel:
    """A tiny SD 2.x-shaped (v-prediction) or SDXL-shaped model, loaded as the engine would."""
    from transformers import CLIPTokenizer

    unet, vae, te1, te2 = build_tiny_family_components(family, seed)
    tok = CLIPTokenizer.from_pretrained(write_char_tokenizer(tmp / f"tokenizer-{family}"))
    if family == "sd2":
        return _finish(f"tiny-{family}", unet, vae, te1, tok, dict(V_SCHEDULER), torch.device("cpu"),
                       torch.float32, None, family="sd2")
    return _finish(f"tiny-{family}", unet, vae, te1, tok, dict(SCHEDULER), torch.device("cpu"), torch.float32,
                   None, family="sdxl", text_encoder_2=te2, tokenizer_2=tok, zero_empty_prompt=True)


def save_tiny_family_model(folder: Path, family: str, seed: int = 0) -> Path:
    """The tiny model in diffusers layout (SDXL with text_encoder_2/tokenizer_2), as a user's folder."""
    unet, vae, te1, te2 = build_tiny_family_components(family, seed)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    te1.save_pretrained(folder / "text_encoder")
    for name in ("tokenizer",) + (("tokenizer_2",) if te2 is not None else ()):
        tok = write_char_tokenizer(folder / name)
        (tok / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    if te2 is not None:
        te2.save_pretrained(folder / "text_encoder_2")
    (folder / "scheduler").mkdir(exist_ok=True)
    sched = V_SCHEDULER if family == "sd2" else SCHEDULER
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    cls = "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline"
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    return folder
