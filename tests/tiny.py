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
