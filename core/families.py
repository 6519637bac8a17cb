"""The Stable Diffusion family as data: what differs between SD 1.x, SD 2.x and SDXL, and how to tell
which one a folder or a single-file checkpoint holds.

Everything a method or loader needs to know about a family is here (native size, text encoders and
the layer their output is read from, added conditioning, VAE precision caveats, shipped configs);
code elsewhere asks the family instead of testing model names."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from resources import resource_path

from .errors import ModelUnavailable

CLIP_TOKENIZER_DIR = resource_path("tokenizer", "clip")


@dataclass(frozen=True)
class Family:
    name: str                     # "sd1" | "sd2" | "sdxl"
    label: str                    # for people: "Stable Diffusion XL"
    native_size: int              # the pixel size the released weights were trained at
    config_dir: Path              # diffusers-layout configs for single-file checkpoints (no weights)
    pipeline: str                 # the diffusers pipeline class that converts a single file
    pad_tokens: tuple[str, ...]   # per tokenizer: the padding token
    # Per text encoder: read its last hidden state ("last") or the one before ("penultimate").
    hidden_layers: tuple[str, ...]
    added_conditioning: bool      # the UNet takes a pooled text embedding and size/crop time ids
    vae_fp16_overflows: bool      # decode in fp32 when the model runs in fp16 (unless a fixed VAE is given)
    default_prediction: str       # for single files whose scheduler is not known
    notes: str = ""               # caveats shown to people (model dialog, --json)

    @property
    def text_encoders(self) -> int:
        return len(self.hidden_layers)


FAMILIES = {
    "sd1": Family("sd1", "Stable Diffusion 1.x", 512, resource_path("configs", "stable-diffusion-v1-5"),
                  "StableDiffusionPipeline", ("<|endoftext|>",), ("last",), False, False, "epsilon"),
    "sd2": Family("sd2", "Stable Diffusion 2.x", 768, resource_path("configs", "stable-diffusion-2-1"),
                  "StableDiffusionPipeline", ("!",), ("last",), False, False, "v_prediction",
                  notes="A single-file SD 2.x checkpoint is read as 2.1 (768 px, v-prediction); choose "
                        "'epsilon' prediction for the 512 px base model."),
    "sdxl": Family("sdxl", "Stable Diffusion XL", 1024, resource_path("configs", "stable-diffusion-xl-base-1.0"),
                   "StableDiffusionXLPipeline", ("<|endoftext|>", "!"), ("penultimate", "penultimate"), True, True,
                   "epsilon",
                   notes="SDXL's VAE overflows in fp16: it decodes in fp32 unless a fixed VAE "
                         "(e.g. madebyollin/sdxl-vae-fp16-fix) is given. Working size 1024 px."),
}
PREDICTIONS = ("auto", "epsilon", "v_prediction")


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelUnavailable(f"Unknown model family '{name}': use {', '.join(FAMILIES)} or auto.") from None


def family_of_unet_config(config: dict, has_second_encoder: bool = False) -> str:
    """sdxl when the UNet takes added text/time conditioning (or a second text encoder exists),
    sd2 when it reads 1024-wide OpenCLIP embeddings, else sd1 (any other one-encoder UNet, the
    demo included)."""
    if has_second_encoder or config.get("addition_embed_type") == "text_time":
        return "sdxl"
    if config.get("cross_attention_dim") == 1024:
        return "sd2"
    return "sd1"


def detect_folder(folder: Path) -> str:
    """The family of a diffusers-layout folder, from model_index.json and the UNet config."""
    folder = Path(folder)
    index = _read_json(folder / "model_index.json") or {}
    if "XL" in str(index.get("_class_name", "")) or (folder / "text_encoder_2").is_dir():
        return "sdxl"
    unet = _read_json(folder / "unet" / "config.json") or {}
    return family_of_unet_config(unet)


# Keys that tell original-layout (LDM / SGM) checkpoints apart, as diffusers' own detection does.
_SDXL_KEY = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
_SD2_KEY = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"


def detect_checkpoint(path: Path) -> str:
    """The family of a single-file .safetensors checkpoint, from its tensor names and one shape (the
    header only: no weights are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if _SDXL_KEY in keys or any(k.startswith("conditioner.embedders.1.") for k in keys):
                return "sdxl"
            if _SD2_KEY in keys and f.get_slice(_SD2_KEY).get_shape()[-1] == 1024:
                return "sd2"
            if any(k.startswith("cond_stage_model.model.") for k in keys):  # OpenCLIP text tower: SD 2.x
                return "sd2"
    except Exception as e:  # safetensors raises several types for a damaged header
        raise ModelUnavailable(f"{Path(path).name} is not a readable .safetensors checkpoint "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__}).") from e
    return "sd1"


def load_tokenizer(pad_token: str):
    """The CLIP BPE tokenizer every family shares, with the family's padding token."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR, pad_token=pad_token, local_files_only=True)


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
