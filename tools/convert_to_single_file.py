"""Export a diffusers-layout SD 1.x, SD 2.x or SDXL model as one original-layout (LDM / SGM)
checkpoint: the single .safetensors file most tools and sites exchange.

    python -m tools.convert_to_single_file MODEL_FOLDER OUT.safetensors [--fp16]

Key names: model.diffusion_model.* (UNet), first_stage_model.* (VAE), and the text encoders as each
family stores them: cond_stage_model.transformer.* (SD 1.x, CLIP in transformers layout),
cond_stage_model.model.* (SD 2.x, OpenCLIP layout), conditioner.embedders.0.transformer.* and
conditioner.embedders.1.model.* (SDXL: CLIP ViT-L, then OpenCLIP bigG with its projection). The
mapping is derived from the component configs, so it works for any UNet / VAE of these shapes (any
number of blocks, layers per block, channels), tiny test models included. Malleable reads such
files back with core.models.load_single_file (tests and benchmarks; the app never writes them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_TEXT_PREFIXES = ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.")

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def _unet_prefix_map(config) -> dict[str, str]:
    """diffusers module prefix -> LDM module prefix, for the blocks whose position depends on config."""
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("per-block layers_per_block is not an SD 1.x layout")
    n_down = len(config["down_block_types"])
    m = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
         "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",  # SDXL
         "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
         "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
         "mid_block.resnets.1": "middle_block.2"}
    for i in range(n_down):
        for j in range(layers):
            k = 1 + i * (layers + 1) + j
            m[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{k}.0"
            m[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{k}.1"
        if i < n_down - 1:
            m[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (layers + 1)}.0.op"
    for i, kind in enumerate(config["up_block_types"]):
        has_attention = "CrossAttn" in kind
        for j in range(layers + 1):
            k = i * (layers + 1) + j
            m[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{k}.0"
            m[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{k}.1"
        if i < len(config["up_block_types"]) - 1:
            k = i * (layers + 1) + layers
            m[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{k}.{2 if has_attention else 1}.conv"
    return m


def _map_key(key: str, prefix_map: dict[str, str], inner: dict[str, str] | None, resnet_marker: str) -> str:
    # longest matching module prefix wins ("down_blocks.1.resnets.0" before "down_blocks.1")
    for old in sorted(prefix_map, key=len, reverse=True):
        if key == old or key.startswith(old + "."):
            rest = key[len(old) + 1:]
            if inner is not None and resnet_marker in old:
                rest = _rename(rest, inner)
            return prefix_map[old] + ("." + rest if rest else "")
    raise KeyError(f"no original-layout name for '{key}'")


def unet_to_ldm(state_dict: dict, config) -> dict:
    prefix_map = _unet_prefix_map(config)
    return {UNET_PREFIX + _map_key(k, prefix_map, _UNET_RESNET, ".resnets."): v for k, v in state_dict.items()}


def vae_to_ldm(state_dict: dict, config) -> dict:
    n = len(config["block_out_channels"])
    layers = config["layers_per_block"]
    m = {}
    for side in ("encoder", "decoder"):
        m[f"{side}.conv_in"] = f"{side}.conv_in"
        m[f"{side}.conv_out"] = f"{side}.conv_out"
        m[f"{side}.conv_norm_out"] = f"{side}.norm_out"
        m[f"{side}.mid_block.resnets.0"] = f"{side}.mid.block_1"
        m[f"{side}.mid_block.attentions.0"] = f"{side}.mid.attn_1"
        m[f"{side}.mid_block.resnets.1"] = f"{side}.mid.block_2"
    for i in range(n):
        for j in range(layers):
            m[f"encoder.down_blocks.{i}.resnets.{j}"] = f"encoder.down.{i}.block.{j}"
        m[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = f"encoder.down.{i}.downsample.conv"
        # the decoder's blocks are stored lowest resolution last in LDM, first in diffusers
        for j in range(layers + 1):
            m[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.up.{n - 1 - i}.block.{j}"
        m[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = f"decoder.up.{n - 1 - i}.upsample.conv"
    m["quant_conv"] = "quant_conv"
    m["post_quant_conv"] = "post_quant_conv"
    out = {}
    for k, v in state_dict.items():
        new = _map_key(k, m, _VAE_RESNET, "resnets")
        if ".attentions." in k:
            head, _, rest = k.rpartition(".attentions.0.")
            new = new[: len(new) - len(rest)] + _rename(rest, _VAE_ATTENTION)
            if v.ndim == 2:  # LDM's VAE attention uses 1x1 convolutions
                v = v[:, :, None, None]
        out[VAE_PREFIX + new] = v
    return out


def _hf_text_keys(state_dict: dict) -> dict:
    # transformers >= 5.6 names CLIPTextModel's weights without the "text_model." level that every
    # original checkpoint (and older transformers) has
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
            for k, v in state_dict.items() if not k.endswith("position_ids")}


def text_encoder_to_ldm(state_dict: dict, prefix: str = TEXT_PREFIX) -> dict:
    """A CLIP text encoder in transformers layout under `prefix` (SD 1.x, SDXL's first encoder)."""
    return {prefix + k: v for k, v in _hf_text_keys(state_dict).items() if not k.startswith("text_projection")}


_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def text_encoder_to_openclip(state_dict: dict, prefix: str) -> dict:
    """A CLIP text encoder written the way OpenCLIP stores it (SD 2.x, SDXL's second encoder):
    resblocks with one fused q/k/v projection, and the text projection as a [width, dim] matrix."""
    sd = _hf_text_keys(state_dict)
    out = {prefix + "token_embedding.weight": sd.pop("text_model.embeddings.token_embedding.weight"),
           prefix + "positional_embedding": sd.pop("text_model.embeddings.position_embedding.weight"),
           prefix + "ln_final.weight": sd.pop("text_model.final_layer_norm.weight"),
           prefix + "ln_final.bias": sd.pop("text_model.final_layer_norm.bias")}
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd.pop("text_projection.weight").T
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        src, dst = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [sd.pop(src + f"self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")])
            for old, new in _OPENCLIP_LAYER.items():
                out[dst + f"{new}.{kind}"] = sd.pop(src + f"{old}.{kind}")
    if sd:
        raise KeyError(f"text encoder weights without an OpenCLIP name: {sorted(sd)[:3]}")
    return out


def to_ldm_state_dict(unet, vae, text_encoder, text_encoder_2=None, family: str = "sd1") -> dict:
    """One original-layout state dict from the diffusers / transformers modules of `family`."""
    sd = {}
    sd.update(unet_to_ldm(unet.state_dict(), unet.config))
    sd.update(vae_to_ldm(vae.state_dict(), vae.config))
    if family == "sdxl":
        sd.update(text_encoder_to_ldm(text_encoder.state_dict(), SDXL_TEXT_PREFIXES[0]))
        sd.update(text_encoder_to_openclip(text_encoder_2.state_dict(), SDXL_TEXT_PREFIXES[1]))
    elif family == "sd2":
        sd.update(text_encoder_to_openclip(text_encoder.state_dict(), SD2_TEXT_PREFIX))
    else:
        sd.update(text_encoder_to_ldm(text_encoder.state_dict()))
    return {k: v.detach().contiguous() for k, v in sd.items()}


def convert(folder: Path, out: Path, half: bool = False) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from core.families import detect_folder

    folder = Path(folder)
    family = detect_folder(folder)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
    text_encoder_2 = (CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")
                      if family == "sdxl" else None)
    sd = to_ldm_state_dict(unet, vae, text_encoder, text_encoder_2, family)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    save_file(sd, str(out), metadata={"format": "pt"})
    return Path(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="diffusers model folder (holds model_index.json)")
    ap.add_argument("out", type=Path, help="output .safetensors file")
    ap.add_argument("--fp16", action="store_true", help="store weights in fp16 (half the size)")
    args = ap.parse_args(argv)
    print(f"wrote {convert(args.folder, args.out, args.fp16)}")


if __name__ == "__main__":
    main()
