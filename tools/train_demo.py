"""Train the embedded demo model on ShapesWorld and write it to resources/models/demo/.

    python -m tools.train_demo [--vae-minutes 14] [--unet-minutes 44] [--threads 2] [--seed 0]
    python -m tools.train_demo --smoke          # a two-minute run into build/train_demo_smoke/, to catch bugs
    python -m tools.train_demo --resume --unet-minutes 90 --unet-lr 4e-4   # train the last checkpoint on
    python -m tools.train_demo --decoder-only --vae-minutes 20              # sharpen the VAE decoder alone
    python -m tools.train_demo --export-only    # write the model from the checkpoints in --work
    python -m tools.train_demo --from-model resources/models/demo --out build/demo_ft --unet-minutes 30 --unet-lr 2e-4
                                                # fine-tune an exported model (its VAE kept as it is)

One seeded command, CPU only. Stages:
  1. render a fixed pool of ShapesWorld scenes (64 px) into a uint8 tensor, once (no flips: positions
     are part of the caption);
  2. a small AutoencoderKL (scale 4, 4 latent channels): L1 + L2 reconstruction + a small KL, trained
     on random 32 px crops (fully convolutional, a quarter of the cost of whole images);
  3. the VAE scaling factor (unit-variance latents) and the latent -> RGB preview map, fitted on the pool;
  4. a UNet2DConditionModel and a CLIPTextModel trained jointly on the pool's latents, SD 1.x noise
     schedule (scaled_linear 0.00085-0.012, 1000 steps, epsilon prediction), 10 % caption dropout
     (so classifier-free guidance works), min-SNR-5 loss weighting, EMA of both; a share
     (--partial-captions) of the captions name only some of the scene (`partial_caption`: "a red
     circle", "a striped shape"), three such variants drawn per scene, so short prompts work;
  5. the EMA weights saved in half precision in diffusers layout (clip/ and dino/ beside them are
     left as they are), with training.json recording what was done, how long, and where.

Training resumes: --resume continues the UNet and text encoder (and their EMA) from --work/unet.pt,
and --decoder-only fine-tunes the VAE decoder with the encoder frozen, so the latents the UNet learnt
stay exactly the same (it may run beside a --resume job; --export-only then joins the two).
--from-model fine-tunes the UNet and text encoder of an exported model without its checkpoints (the
exported half-precision weights, upcast): its VAE, scaling factor and preview map are kept.
training.json keeps one entry per session in "sessions".

Each stage is time-boxed (the learning rate decays over the box's elapsed fraction), so the step
count is recorded rather than fixed; --vae-steps/--unet-steps fix it instead. Checkpoints land in
--work every few minutes; a finished VAE stage is reused when the command is run again.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools.make_demo_model import (OUT, SCHEDULER, TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG,
                                   _canonical_text_encoder_keys, _copy_tokenizer)
from tools.shapesworld import partial_caption, scene_anywhere, scenes

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "train_demo"
TOKENIZER = ROOT / "resources" / "tokenizer" / "clip"
POOL_SEED = 1000  # held-out evaluation scenes use other seeds and exclude the pool's captions
PARTIAL_VARIANTS = 3  # partial captions drawn per scene, beside its full caption


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---- data ------------------------------------------------------------------------------------
def render_pool(n: int, seed: int = POOL_SEED, anywhere: int = 0) -> tuple[torch.Tensor, list[list[str]]]:
    """(images, captions): per scene its full caption, then PARTIAL_VARIANTS partial ones (drawn from
    their own seeded stream, so the scenes are the same as without them); `anywhere` more scenes
    with the shape anywhere (`scene_anywhere`, a third stream) after the n of the training world."""
    images = np.empty((n + anywhere, 64, 64, 3), np.uint8)
    captions = []
    caption_rng = random.Random(seed + 1)
    place_rng = random.Random(seed + 2)
    pool = list(scenes(seed, n, 64)) + [scene_anywhere(place_rng, 64) for _ in range(anywhere)]
    for i, s in enumerate(pool):
        images[i] = np.asarray(s.image)
        captions.append([s.caption] + [partial_caption(s.shapes, s.background, caption_rng) for _ in range(PARTIAL_VARIANTS)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions


def pool_captions(n: int, seed: int = POOL_SEED, anywhere: int = 0) -> set[str]:
    place_rng = random.Random(seed + 2)  # render_pool's stream for the scenes anywhere
    return {s.caption for s in scenes(seed, n, 64)} | {scene_anywhere(place_rng, 64).caption for _ in range(anywhere)}


def to_signed(u8: torch.Tensor) -> torch.Tensor:
    return u8.float() / 127.5 - 1.0


def tokenize(captions: list[str]) -> torch.Tensor:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)
    return tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


# ---- schedules -------------------------------------------------------------------------------
class Box:
    """A stage's budget: a step count or a wall-clock box; `frac` drives the learning-rate decay."""

    def __init__(self, minutes: float, steps: int | None):
        self.t0, self.seconds, self.steps = time.time(), minutes * 60, steps

    def frac(self, step: int) -> float:
        if self.steps:
            return step / self.steps
        return (time.time() - self.t0) / self.seconds

    def done(self, step: int) -> bool:
        return self.frac(step) >= 1.0

    def elapsed(self) -> float:
        return time.time() - self.t0


def lr_at(base: float, step: int, frac: float, warmup: int = 100) -> float:
    w = min(1.0, (step + 1) / warmup)
    return base * w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def optimise(opt, params, loss: torch.Tensor, lr: float) -> None:
    """One step at learning rate `lr`, gradients clipped to norm 1 (every stage trains this way)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


class EMA:
    def __init__(self, modules: list[torch.nn.Module], decay: float):
        self.decay = decay
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to(self) -> list[torch.Tensor]:
        """Swap the EMA weights into the modules; returns the live weights to restore."""
        live = [p.detach().clone() for p in self.params]
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)
        return live

    @torch.no_grad()
    def restore(self, live: list[torch.Tensor]) -> None:
        for p, v in zip(self.params, live):
            p.copy_(v)


# ---- stage 2: VAE ----------------------------------------------------------------------------
def train_vae(vae, pool: torch.Tensor, box: Box, gen: torch.Generator, batch: int, lr: float,
              kl_weight: float, ckpt: Path) -> dict:
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    step, t_ckpt, hist = 0, time.time(), []
    n = len(pool)
    while not box.done(step):
        idx = torch.randint(0, n, (batch,), generator=gen)
        ox, oy = torch.randint(0, 33, (2,), generator=gen).tolist()  # one crop offset per batch (on the 4-px grid below)
        ox, oy = ox // 4 * 4, oy // 4 * 4
        x = to_signed(pool[idx][:, :, oy:oy + 32, ox:ox + 32])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        d = rec - x
        loss_rec = d.abs().mean() + d.pow(2).mean()
        loss_kl = post.kl().mean() / post.mean[0].numel()
        loss = loss_rec + kl_weight * loss_kl
        optimise(opt, vae.parameters(), loss, lr_at(lr, step, box.frac(step)))
        hist.append(float(d.detach().pow(2).mean()))
        step += 1
        if step % 50 == 0:
            mse = float(np.mean(hist[-50:]))
            psnr = 10 * math.log10(4.0 / max(mse, 1e-12))  # signed range: peak-to-peak 2
            log(f"vae step {step} rec {float(loss_rec):.4f} kl {float(loss_kl):.3f} train-psnr {psnr:.1f} dB "
                f"({box.elapsed():.0f} s)")
        if time.time() - t_ckpt > 300:
            torch.save({"vae": vae.state_dict(), "step": step}, ckpt)
            t_ckpt = time.time()
    vae.eval()
    return {"steps": step, "seconds": round(box.elapsed(), 1), "batch": batch, "crop": 32, "lr": lr,
            "kl_weight": kl_weight}


def train_decoder(vae, pool: torch.Tensor, box: Box, gen: torch.Generator, batch: int, lr: float) -> dict:
    """Fine-tune the decoder alone on sampled latents of whole scenes: the encoder, and so every
    latent the UNet was trained on, stays bit-identical."""
    for p in vae.parameters():
        p.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    vae.eval()
    vae.decoder.train()
    step, hist = 0, []
    n = len(pool)
    while not box.done(step):
        idx = torch.randint(0, n, (batch,), generator=gen)
        x = to_signed(pool[idx])
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        d = vae.decode(z).sample - x
        loss = d.abs().mean() + d.pow(2).mean()
        optimise(opt, params, loss, lr_at(lr, step, box.frac(step), warmup=20))
        hist.append(float(d.detach().pow(2).mean()))
        step += 1
        if step % 50 == 0:
            psnr = 10 * math.log10(4.0 / max(float(np.mean(hist[-50:])), 1e-12))
            log(f"decoder step {step} train-psnr {psnr:.1f} dB ({box.elapsed():.0f} s)")
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return {"steps": step, "seconds": round(box.elapsed(), 1), "batch": batch, "lr": lr, "images": "64 px, whole"}


@torch.no_grad()
def encode_pool(vae, pool: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(pool), batch):
        post = vae.encode(to_signed(pool[i:i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def fit_latent_statistics(vae, pool: torch.Tensor, means: torch.Tensor, gen: torch.Generator):
    """Scaling factor for unit-variance latents (as 0.18215 is for SD) and the least-squares linear
    map from scaled latents to the decoded image downsampled to latent size (live previews)."""
    scaling_factor = float(1.0 / means.std())
    idx = torch.randperm(len(pool), generator=gen)[:256]
    raw = means[idx]
    decoded = torch.cat([vae.decode(raw[i:i + 128]).sample for i in range(0, len(raw), 128)]).clamp(-1, 1)
    target = F.avg_pool2d(decoded, 4)
    lat = raw * scaling_factor
    x = lat.permute(0, 2, 3, 1).reshape(-1, lat.shape[1]).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
    sol = torch.linalg.lstsq(x, y).solution
    factors = [[round(float(v), 6) for v in row] for row in sol[:-1]]
    bias = [round(float(v), 6) for v in sol[-1]]
    return round(scaling_factor, 6), factors, bias


# ---- stage 4: UNet + text encoder ------------------------------------------------------------
def save_unet_checkpoint(ckpt: Path, unet, text_encoder, ema: "EMA", step: int) -> None:
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                "ema": ema.shadow, "step": step}, tmp)
    tmp.replace(ckpt)


def train_unet(unet, text_encoder, means, stds, scaling_factor, ids, empty_ids, box: Box,
               gen: torch.Generator, batch: int, lr: float, ema: EMA, ckpt: Path, export_fn,
               start_step: int = 0, partial: float = 0.0) -> dict:
    """ids: [scenes, 1 + variants, 77], the full caption first; `partial` of the samples take one of
    the partial variants instead."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0).float()
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    unet.train()
    text_encoder.train()
    step, t_ckpt, hist = 0, time.time(), []  # step counts this session; start_step + step overall
    n = len(means)
    while not box.done(step):
        idx = torch.randint(0, n, (batch,), generator=gen)
        z0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * scaling_factor
        variant = torch.where(torch.rand(batch, generator=gen) < partial,
                              torch.randint(1, ids.shape[1], (batch,), generator=gen), 0) if partial else 0
        tok = ids[idx, variant].clone()
        drop = torch.rand(batch, generator=gen) < 0.1
        tok[drop] = empty_ids
        t = torch.randint(0, 1000, (batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        cond = text_encoder(tok)[0]
        pred = unet(zt, t, cond).sample
        loss = ((pred - eps).pow(2).mean((1, 2, 3)) * weight[t]).mean()
        optimise(opt, params, loss, lr_at(lr, step, box.frac(step)))
        ema.update(start_step + step)
        hist.append(float((pred.detach() - eps).pow(2).mean()))
        step += 1
        if step % 50 == 0:
            log(f"unet step {start_step + step} eps-mse {np.mean(hist[-50:]):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"({box.elapsed():.0f} s)")
        if time.time() - t_ckpt > 300:
            save_unet_checkpoint(ckpt, unet, text_encoder, ema, start_step + step)
            export_fn(start_step + step)
            t_ckpt = time.time()
    save_unet_checkpoint(ckpt, unet, text_encoder, ema, start_step + step)
    return {"steps": step, "first_step": start_step, "seconds": round(box.elapsed(), 1), "batch": batch, "lr": lr,
            "ema_decay": ema.decay, "caption_dropout": 0.1, "partial_captions": partial, "loss_weighting": "min-SNR-5",
            "final_eps_mse": round(float(np.mean(hist[-200:])), 5) if hist else None}


# ---- export ----------------------------------------------------------------------------------
def export(out: Path, unet, vae, text_encoder, scaling_factor: float, factors, bias, meta: dict) -> None:
    """Diffusers layout, half precision; out/clip and out/dino are left untouched."""
    import copy

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    vae = copy.deepcopy(vae)
    vae.register_to_config(scaling_factor=scaling_factor)
    copy.deepcopy(unet).half().save_pretrained(out / "unet", safe_serialization=True)
    _drop_source_path(out / "unet" / "config.json")  # a fine-tuned UNet remembers where it was loaded from
    vae.half().save_pretrained(out / "vae", safe_serialization=True)
    copy.deepcopy(text_encoder).half().save_pretrained(out / "text_encoder", safe_serialization=True)
    _canonical_text_encoder_keys(out / "text_encoder" / "model.safetensors")
    _copy_tokenizer(out / "tokenizer")
    (out / "scheduler").mkdir()
    shutil.copyfile(SCHEDULER, out / "scheduler" / "scheduler_config.json")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "feature_extractor": [None, None],
        "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }, indent=2) + "\n")
    (out / "latent_rgb.json").write_text(json.dumps({
        "factors": factors, "bias": bias,
        "about": "scaled latents (x VAE scaling_factor) -> RGB in -1..1, least squares against the "
                 "decoded image downsampled to latent size (fitted on ShapesWorld scenes)",
    }, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")


def _drop_source_path(config: Path) -> None:
    cfg = json.loads(config.read_text())
    if cfg.pop("_name_or_path", None) is not None:
        config.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def machine(threads: int) -> dict:
    return {"where": "CPU only, no GPU", "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": threads, "torch": torch.__version__}


def earlier_sessions(out: Path) -> list[dict]:
    """The sessions recorded in the exported model's training.json (the first run kept its stages at the
    top level: it becomes the first session)."""
    f = out / "training.json"
    if not f.is_file():
        return []
    old = json.loads(f.read_text())
    if "sessions" in old:
        return old["sessions"]
    return [{k: old[k] for k in ("command", "started", "finished", "machine", "vae", "unet", "total_wall_seconds")
             if k in old}]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pool", type=int, default=16000)
    ap.add_argument("--vae-minutes", type=float, default=11)
    ap.add_argument("--unet-minutes", type=float, default=43)
    ap.add_argument("--vae-steps", type=int, default=None)
    ap.add_argument("--unet-steps", type=int, default=None)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--unet-batch", type=int, default=64)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--vae-channels", type=int, nargs=3, default=[16, 32, 64])
    ap.add_argument("--unet-channels", type=int, nargs=3, default=list(UNET_CONFIG["block_out_channels"]))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the UNet and text encoder from --work/unet.pt")
    mode.add_argument("--decoder-only", action="store_true",
                      help="fine-tune the VAE decoder of --work/vae_done.pt for --vae-minutes, then stop")
    mode.add_argument("--export-only", action="store_true", help="write --out from the checkpoints in --work")
    mode.add_argument("--from-model", type=Path, default=None,
                      help="fine-tune the UNet and text encoder of this exported model (its VAE kept)")
    ap.add_argument("--anywhere", type=int, default=0,
                    help="scenes added to the pool with the shape anywhere, captioned by the nearest place")
    ap.add_argument("--partial-captions", type=float, default=0.5,
                    help="share of the UNet's training captions that name only part of the scene")
    ap.add_argument("--smoke", action="store_true", help="2-minute run into build/train_demo_smoke/")
    args = ap.parse_args(argv)
    if args.smoke:
        args.work = ROOT / "build" / "train_demo_smoke"
        args.out = args.work / "demo"
        args.pool, args.vae_minutes, args.unet_minutes = 2000, 0.7, 0.7

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    # a resumed session draws other batches than the one it continues
    gen = torch.Generator().manual_seed(args.seed + (7919 if args.resume or args.decoder_only else 0))
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    session = {"command": "python -m tools.train_demo " + " ".join(argv if argv is not None else os.sys.argv[1:]),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(args.threads)}
    continuing = args.resume or args.decoder_only or args.export_only
    sessions = earlier_sessions(args.from_model or args.out) if continuing or args.from_model else []

    t = time.time()
    pool, captions = render_pool(args.pool, anywhere=args.anywhere)
    log(f"rendered {len(pool)} scenes in {time.time() - t:.1f} s")

    vae = AutoencoderKL(**dict(VAE_CONFIG, block_out_channels=tuple(args.vae_channels)))
    vae_ckpt = args.work / "vae.pt"
    done = args.work / "vae_done.pt"
    if args.from_model:
        vae = AutoencoderKL.from_pretrained(args.from_model / "vae", torch_dtype=torch.float32)
        args.vae_channels = list(vae.config.block_out_channels)
        log(f"fine-tuning {args.from_model}: its VAE kept as it is")
    elif done.exists():
        state = torch.load(done, weights_only=False)
        vae.load_state_dict(state["vae"])
        log(f"reusing the trained VAE from {done}")
    elif continuing:
        raise SystemExit(f"no trained VAE in {args.work}: run python -m tools.train_demo first")
    else:
        session["vae"] = train_vae(vae, pool, Box(args.vae_minutes, args.vae_steps), gen, args.vae_batch, 1e-3,
                                   1e-5, vae_ckpt)
        torch.save({"vae": vae.state_dict(), "meta": session["vae"]}, done)
    if args.decoder_only:
        session["vae_decoder"] = train_decoder(vae, pool, Box(args.vae_minutes, args.vae_steps), gen,
                                               args.vae_batch, 2e-4)
        tmp = done.with_suffix(".tmp")
        torch.save({"vae": vae.state_dict(), "meta": dict(state.get("meta", {}), decoder=session["vae_decoder"])}, tmp)
        tmp.replace(done)
        session["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        (args.work / "decoder_session.json").write_text(json.dumps(session, indent=2) + "\n")
        log(f"fine-tuned the decoder; saved {done}. Join it with --export-only once the UNet is done.")
        return
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)

    t = time.time()
    means, stds = encode_pool(vae, pool)
    if args.from_model:  # the UNet learnt these latents: the same scale and preview map
        scaling_factor = float(vae.config.scaling_factor)
        preview = json.loads((args.from_model / "latent_rgb.json").read_text())
        factors, bias = preview["factors"], preview["bias"]
    else:
        scaling_factor, factors, bias = fit_latent_statistics(vae, pool, means, gen)
    log(f"encoded the pool in {time.time() - t:.1f} s; scaling factor {scaling_factor}")
    del pool

    if args.from_model:
        unet = UNet2DConditionModel.from_pretrained(args.from_model / "unet", torch_dtype=torch.float32)
        text_encoder = CLIPTextModel.from_pretrained(args.from_model / "text_encoder", torch_dtype=torch.float32)
        args.unet_channels = list(unet.config.block_out_channels)
    else:
        unet = UNet2DConditionModel(**dict(UNET_CONFIG, block_out_channels=tuple(args.unet_channels)))
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    ids = tokenize([c for variants in captions for c in variants]).view(len(captions), len(captions[0]), -1)
    empty_ids = tokenize([""])[0]
    ema = EMA([unet, text_encoder], 0.999)
    start_step = 0
    if continuing:
        ckpt = torch.load(args.work / "unet.pt", weights_only=False)
        unet.load_state_dict(ckpt["unet"])
        text_encoder.load_state_dict(ckpt["text_encoder"])
        ema.shadow = ckpt["ema"]
        start_step = ckpt["step"]
        log(f"resuming from step {start_step}")
    elif args.from_model:  # count on from the exported model's steps (the EMA then runs at its full decay)
        start_step = json.loads((args.from_model / "training.json").read_text())["unet"]["steps"]

    def export_now(step: int, final: bool = False) -> None:
        live = ema.copy_to()
        decoder = args.work / "decoder_session.json"
        extra = [json.loads(decoder.read_text())] if args.export_only and decoder.is_file() else []
        meta = {"seed": args.seed, "pool": {"seed": POOL_SEED, "scenes": args.pool, "px": 64,
                                            "anywhere": args.anywhere},
                "unet": {"steps": step, "block_out_channels": list(args.unet_channels)},
                "vae": {"block_out_channels": list(args.vae_channels)},
                "sessions": sessions + extra + [dict(session, wall_seconds=round(time.time() - t_start, 1))],
                "final": final}
        export(args.out, unet.eval(), vae, text_encoder.eval(), scaling_factor, factors, bias, meta)
        ema.restore(live)
        unet.train()
        text_encoder.train()
        log(f"exported the EMA weights at step {step} to {args.out}")

    if not args.export_only:
        session["unet"] = train_unet(unet, text_encoder, means, stds, scaling_factor, ids, empty_ids,
                                     Box(args.unet_minutes, args.unet_steps), gen, args.unet_batch, args.unet_lr,
                                     ema, args.work / "unet.pt", export_now, start_step, args.partial_captions)
    session["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    export_now(start_step + session.get("unet", {}).get("steps", 0), final=True)
    if args.export_only:
        (args.work / "decoder_session.json").unlink(missing_ok=True)  # now in training.json: record it once
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    log(f"done in {(time.time() - t_start) / 60:.1f} min; {args.out} is {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
