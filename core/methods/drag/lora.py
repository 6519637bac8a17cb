"""DragDiffusion's identity-preserving LoRA: a low-rank adapter on the q/k/v/out projections of
every attention layer, fitted to one image with the ordinary denoising loss so that inversion and
regeneration keep that image's identity while its latent is dragged.

The adapter lives on the UNet only while a drag runs (`lora_adapter` removes it in a finally
block, cancellation included); between runs its weights are kept as a state dict in the engine's
cache, so a second drag of the same image trains nothing. Frozen weights stay in the model's
dtype; the adapter's parameters are float32.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from ...events import Reporter
from ...loss_scaling import LossScaler
from ...models import DiffusionModel
from ...previews import latent_preview
from ...schedule import prediction_from, split_prediction
from ...unet_calls import unet_forward, vae_encode

ADAPTER = "malleable_drag"
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
WEIGHT_DECAY = 1e-2
BATCH = 4
ZOOM = 1.125  # the random crops are taken from the image enlarged by this factor


def lora_layers(unet: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The UNet's modules that carry this adapter, by name."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in unet.named_modules()
            if isinstance(m, BaseTunerLayer) and ADAPTER in getattr(m, "lora_A", {})}


def lora_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for name, p in unet.named_parameters() if f".{ADAPTER}." in name]


@contextlib.contextmanager
def lora_adapter(unet: torch.nn.Module, rank: int, keep: Optional[dict[str, float]] = None,
                 seed: int = 0) -> Iterator[list[torch.nn.Parameter]]:
    """Attach a fresh rank-`rank` LoRA (scale 1, zero-initialised B: the UNet starts unchanged) to
    every attention projection; yields its float32 parameters; removes it on exit, whatever
    happens, so other methods and other images see the UNet as it was. `keep`: the user's own
    LoRA adapters {name: scale}, which stay active under it (the identity LoRA learns on top).
    peft draws A's initialisation from the global RNG: it is drawn here from `seed` instead, so the
    result depends on the seed alone, not on what ran before in the process (a batch, a GUI
    session), and the global RNG is left as it was."""
    from peft import LoraConfig

    previous = _active_adapters(unet)
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, init_lora_weights=True,
                        target_modules=list(TARGET_MODULES))
    try:
        device = next(unet.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(seed))
            unet.add_adapter(config, adapter_name=ADAPTER)  # makes it the only active adapter
        if keep:
            unet.set_adapters(list(keep) + [ADAPTER], weights=list(keep.values()) + [1.0])
        for layer in lora_layers(unet).values():
            # peft gives the adapter the base layer's dtype (fp16 on GPU); training needs fp32.
            layer.lora_A[ADAPTER].to(torch.float32)
            layer.lora_B[ADAPTER].to(torch.float32)
        params = lora_parameters(unet)
        for p in params:
            p.requires_grad_(False)  # only train_identity_lora turns gradients on
        yield params
    finally:
        remove_adapter(unet, previous, keep)


def _active_adapters(unet) -> list[str]:
    if getattr(unet, "_hf_peft_config_loaded", None):
        return list(unet.active_adapters() or [])
    return []


def remove_adapter(unet: torch.nn.Module, restore: Optional[list[str]] = None,
                   scales: Optional[dict[str, float]] = None) -> None:
    """Take this adapter off the UNet, reactivating the adapters in `restore` (at their `scales`).
    When it is the only one, the peft wrappers go too and the original Linear modules are back."""
    config = getattr(unet, "peft_config", None) or {}
    others = [name for name in config if name != ADAPTER]
    if others:
        if ADAPTER in config:
            unet.delete_adapters(ADAPTER)
        keep = [name for name in (restore or []) if name in others]
        if keep and scales:
            unet.set_adapters(keep, weights=[scales.get(name, 1.0) for name in keep])
        elif keep:
            unet.set_adapter(keep)
    elif config or lora_layers(unet):
        unet.unload_lora()


def get_lora_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights (float32, on the UNet's device), detached copies."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    return {k: v.detach().clone() for k, v in state.items()}


def set_lora_state(unet: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, state, adapter_name=ADAPTER)
    missing = [k for k in getattr(result, "missing_keys", []) if f".{ADAPTER}." in k]
    unexpected = list(getattr(result, "unexpected_keys", []))
    if missing or unexpected:
        raise RuntimeError(f"LoRA state does not fit the adapter: {len(missing)} missing, "
                           f"{len(unexpected)} unexpected keys")


# ---- training data ------------------------------------------------------------------------------

class LatentCrops:
    """Random crops of the image for LoRA training, cut in latent space so the VAE runs once: the
    image's own latent plus crops (at the working size) of the latent of the enlarged image."""

    def __init__(self, latent: torch.Tensor, zoomed: torch.Tensor):
        self.latent = latent.float()
        self.zoomed = zoomed.float()

    @classmethod
    def from_image(cls, model: DiffusionModel, image: torch.Tensor, latent: torch.Tensor,
                   zoom: float = ZOOM) -> "LatentCrops":
        s = model.vae_scale
        h, w = image.shape[-2:]
        size = (-(-round(h * zoom) // s) * s, -(-round(w * zoom) // s) * s)
        with torch.no_grad():
            big = F.interpolate(image.float(), size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
            zoomed = vae_encode(model, big)
        return cls(latent, zoomed)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        h, w = self.latent.shape[-2:]
        zh, zw = self.zoomed.shape[-2:]
        items = [self.latent[0]]
        for _ in range(n - 1):
            oy = int(torch.randint(0, zh - h + 1, (1,), generator=gen))
            ox = int(torch.randint(0, zw - w + 1, (1,), generator=gen))
            items.append(self.zoomed[0, :, oy:oy + h, ox:ox + w])
        return torch.stack(items)


# ---- the objective ------------------------------------------------------------------------------

def identity_loss(model: DiffusionModel, alphas: torch.Tensor, x0: torch.Tensor, cond: torch.Tensor,
                  t: torch.Tensor, noise: torch.Tensor):
    """The denoising loss at timesteps `t` (one per item): -> (loss, model output, noisy input).
    The target follows the model's prediction type (epsilon for SD 1.x)."""
    a = alphas[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    out = unet_forward(model, noisy, t, cond)
    target = prediction_from(model.prediction_type, x0, noise, a)
    return F.mse_loss(out, target), out, noisy


def train_identity_lora(model: DiffusionModel, params: list[torch.nn.Parameter], crops: LatentCrops,
                        cond: torch.Tensor, steps: int, lr: float, gen: torch.Generator,
                        reporter: Optional[Reporter] = None, batch: int = BATCH) -> list[float]:
    """Fit the attached adapter to the image: AdamW, batches of random crops, uniform timesteps.
    The loss is scaled through an fp16 UNet (core/loss_scaling.py). Returns the loss of every step.
    Leaves the parameters without gradients."""
    from ...schedule import DDIMSchedule

    device = model.device
    alphas = DDIMSchedule(model.scheduler_config, 1).alphas_cumprod.to(device, torch.float32)
    n_train = alphas.shape[0]
    cond = cond.expand(batch)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    scaler = LossScaler.for_dtype(model.dtype)
    losses = []
    if reporter:
        reporter.stage("lora", steps)
    try:
        for k in range(steps):
            x0 = crops.sample(batch, gen).to(device)
            t = torch.randint(0, n_train, (batch,), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            with torch.enable_grad():
                loss, out, noisy = identity_loss(model, alphas, x0, cond, t, noise)
                opt.zero_grad(set_to_none=True)
                scaler.backward(loss, params)
            opt.step()
            losses.append(loss.detach())
            if reporter:
                a = alphas[t[:1]].view(-1, 1, 1, 1)
                x0_hat = _x0_from(model, noisy[:1], out[:1].detach(), a)
                reporter.step(k + 1, steps, latent_preview(model, x0_hat))
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
    return torch.stack(losses).tolist() if losses else []


def _x0_from(model: DiffusionModel, noisy: torch.Tensor, out: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return split_prediction(model.prediction_type, noisy, out, a)[0]
