"""The user's own LoRAs (style, character, LCM-LoRA): loaded into the UNet and text encoders with
diffusers' LoRA loaders on the peft backend, so Kohya/civitai and diffusers-format files both work
and no key mapping is written here.

A model with LoRAs is another model: its id gets a suffix naming the files' contents and scales, so
every content-keyed cache (inversions, drag's identity LoRA, mapping networks, edit directions)
keeps results of different LoRA sets apart. Drag's own identity LoRA is trained on top of them
(core/methods/drag/lora.py keeps the user adapters active)."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput, ModelUnavailable

ADAPTER_PREFIX = "user_lora_"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


@dataclass(frozen=True)
class LoraSpec:
    path: str
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "LoraSpec":
        """"PATH" or "PATH:SCALE" (a Windows drive letter's colon is not a scale)."""
        text = str(text).strip()
        head, sep, tail = text.rpartition(":")
        if sep and head and not (len(head) == 1 and tail.startswith(("\\", "/"))):
            try:
                scale = float(tail)
            except ValueError:
                return cls(text)
            if not math.isfinite(scale):
                raise InvalidInput(f"LoRA scale in '{text}' is not a number: use PATH:SCALE, e.g. style.safetensors:0.8.")
            return cls(head, scale)
        return cls(text)

    def describe(self) -> str:
        return f"{Path(self.path).name}:{self.scale:g}"


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()[:16]


def check_lora_file(spec: LoraSpec, allow_pickle: bool = False) -> Path:
    path = Path(spec.path).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise InvalidInput(f"{path.name} is a pickle file, which can run code when loaded. Use the LoRA's "
                           ".safetensors version, or allow pickle files explicitly if you trust the source.")
    if not path.is_file():
        raise InvalidInput(f"LoRA file not found: {path}. Check the path.")
    if path.suffix.lower() not in (".safetensors",) + PICKLE_SUFFIXES:
        raise InvalidInput(f"{path.name} is not a LoRA file: use a .safetensors LoRA (Kohya/civitai or diffusers).")
    return path


def lora_suffix(loras: tuple[LoraSpec, ...], allow_pickle: bool = False) -> str:
    """'+lora:<digest>' naming the files' contents and scales in order; '' without LoRAs."""
    if not loras:
        return ""
    h = hashlib.sha256()
    for spec in loras:
        h.update(file_digest(check_lora_file(spec, allow_pickle)).encode() + f"@{spec.scale!r};".encode())
    return f"+lora:{h.hexdigest()[:12]}"


def _mixin_for(model):
    """diffusers' LoRA-loader class for the model's family (its classmethods do the loading)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    return StableDiffusionXLLoraLoaderMixin if model.text_encoder_2 is not None else StableDiffusionLoraLoaderMixin


def _load_into_text_encoder(state_dict: dict, network_alphas, encoder, prefix: str, adapter_name: str) -> bool:
    """The text-encoder part of a LoRA, converted by diffusers' own functions and injected with peft.

    diffusers hands this step to transformers' `load_adapter`, which in transformers 5.x refuses
    every peft release on PyPI (it asks for peft >= 0.22; the newest is 0.21.2). The same steps,
    minus that check. Returns whether the LoRA had a part for this encoder."""
    from diffusers.utils.peft_utils import _create_lora_config
    from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    part = {k.removeprefix(f"{prefix}."): v for k, v in state_dict.items() if k.startswith(f"{prefix}.")}
    if not part:
        return False
    part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
    if not hasattr(encoder, "text_model"):  # CLIPTextModel is flattened in transformers >= 5.6
        part = {k.removeprefix("text_model."): v for k, v in part.items()}
    rank = {f"{name}.lora_B.weight": part[f"{name}.lora_B.weight"].shape[1]
            for name, _ in encoder.named_modules() if f"{name}.lora_B.weight" in part}
    alphas = None
    if network_alphas:
        alphas = {k.removeprefix(f"{prefix}."): v for k, v in network_alphas.items()
                  if k.split(".")[0] == prefix}
    config = _create_lora_config(part, alphas, None, rank, is_unet=False)
    inject_adapter_in_model(config, encoder, adapter_name=adapter_name)
    result = set_peft_model_state_dict(encoder, part, adapter_name=adapter_name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if unexpected:
        raise ValueError(f"{len(unexpected)} text-encoder LoRA weights match no layer (e.g. {unexpected[0]})")
    return True


def apply_loras(model, loras: tuple[LoraSpec, ...], allow_pickle: bool = False) -> dict[str, float]:
    """Load every LoRA as its own adapter (UNet and text encoders) and activate them all with their
    scales. Returns {adapter name: scale}: what stays active while drag trains its identity LoRA."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    if not loras:
        return {}
    mixin = _mixin_for(model)
    encoders = [("text_encoder", model.text_encoder)]
    if model.text_encoder_2 is not None:
        encoders.append(("text_encoder_2", model.text_encoder_2))
    names, scales, on_encoder = [], [], {prefix: [] for prefix, _ in encoders}
    for k, spec in enumerate(loras):
        path = check_lora_file(spec, allow_pickle)
        name = f"{ADAPTER_PREFIX}{k}"
        try:
            state_dict, alphas = mixin.lora_state_dict(str(path), use_safetensors=path.suffix == ".safetensors",
                                                       local_files_only=True, unet_config=model.unet.config)
            if not state_dict or not all("lora" in key for key in state_dict):
                raise ValueError("it holds no LoRA weights")
            mixin.load_lora_into_unet(state_dict, alphas, model.unet, adapter_name=name)
            for prefix, encoder in encoders:
                if _load_into_text_encoder(state_dict, alphas, encoder, prefix, name):
                    on_encoder[prefix].append((name, float(spec.scale)))
        except MemoryError:
            raise
        except Exception as e:  # diffusers raises many types for a file that is not a LoRA of this model
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelUnavailable(f"{path.name} could not be applied to this model ({first}): is it a LoRA for "
                                   f"{model.family_info.label}?") from e
        names.append(name)
        scales.append(float(spec.scale))
    model.unet.set_adapters(names, weights=scales)
    for prefix, encoder in encoders:
        if on_encoder[prefix]:
            set_weights_and_activate_adapters(encoder, [n for n, _ in on_encoder[prefix]],
                                              [w for _, w in on_encoder[prefix]])
    for module in (model.unet, model.text_encoder, model.text_encoder_2):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    return dict(zip(names, scales))
