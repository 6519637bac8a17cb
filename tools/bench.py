"""Benchmark every registered method: seconds (cold and warm), seconds per stage, time to first
preview, UNet/VAE passes, peak GPU memory, and the floor — the pass counts priced at the measured
cost of one UNet (and VAE) pass of that batch size — with the ratio of measured time to floor.

    python -m tools.bench                 # SD 1.5 architecture, random weights, 512x512, on the GPU
    python -m tools.bench --tiny          # the demo model on the CPU, reduced steps (< 1 minute)
    python -m tools.bench --quick --device cpu --size 64   # SD 1.5 path, reduced steps: checks the script
    python -m tools.bench --methods pnp,drag --out tools/bench_results/h100-2026-11-23.json
    python -m tools.bench --family sdxl   # SDXL (or sd2) architecture from the shipped configs, 1024 px
    python -m tools.bench --low-vram      # the same with low-VRAM mode: compare peak_gpu_gb
    python -m tools.bench --batch         # a folder batch: local vs a process per image vs Ray actors

Prints one JSON object. Benchmarks are not tests: nothing here asserts a time."""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core import EditRequest, ModelSpec
from core.engine import Engine
from core.registry import all_methods
from core.schedule import DDIMSchedule
from core.unet_calls import counters, unet_forward

# Inputs a method needs beyond its defaults. The image is a red circle in the centre (ShapesWorld).
BENCH_PARAMS = {
    "reconstruct": {"prompt": "a large red circle in the centre, on a white background"},
    "pnp": {"prompt": "a large blue circle in the centre, on a white background",
            "source_prompt": "a large red circle in the centre, on a white background"},
    "drag": {"prompt": "a large red circle in the centre, on a white background"},  # points added per size
    "quick-drag": {"prompt": "a large red circle in the centre, on a white background"},  # points added per size
    "pix2pix-zero": {"source_word": "circle", "target_word": "square",
                     "source_prompt": "a large red circle in the centre, on a white background"},
    "style-diffusion": {"source_prompt": "a large red circle in the centre, on a white background",
                        "prompt": "a large red circle in the centre, on a white background, oil painting"},
    "diffuseit": {"prompt": "a large blue circle in the centre", "source_prompt": "a large red circle in the centre"},
}
# --tiny: fewer steps so every method finishes in seconds on a CPU; the pass accounting is the same.
TINY_OVERRIDES = {
    "steps": 6, "lora_steps": 4, "drag_steps": 4, "train_iters_scale": 2, "resample": 1, "cutouts": 2,
    "reg_steps": 1,
}


def bench_image(size: int) -> np.ndarray:
    from tools.shapesworld import sample_scene

    scene = sample_scene(random.Random(0), size, n_shapes=1, shape="circle", colour="red", fill="filled",
                         size="large", position="in the centre", background="white", two_tone=False)
    return np.asarray(scene.image)


def params_for(method, size: int, tiny: bool) -> dict:
    values = dict(BENCH_PARAMS.get(method.name, {}))
    names = {f.name for f in method.params.fields()}
    if "points" in names:
        c = size / 2
        values["points"] = [[c, c, c + 0.15 * size, c]]
    if tiny:
        values.update({k: v for k, v in TINY_OVERRIDES.items() if k in names})
    return values


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats: int = 3) -> float:
    fn()  # warm-up (kernels, allocator)
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


class UnitCosts:
    """Seconds of one UNet forward (and forward+backward) per batch size, and of VAE passes, at the
    benchmark's working size. Measured lazily for the batch sizes the methods actually used."""

    def __init__(self, model, latent_hw: tuple[int, int]):
        self.model = model
        self.hw = latent_hw
        self.cache: dict = {}
        self.emb = model.encode_text([""])

    def unet(self, batch: int, grad: bool) -> float:
        key = ("unet", batch, grad)
        if key not in self.cache:
            m = self.model
            x = torch.randn(batch, m.latent_channels, *self.hw, device=m.device)
            emb = self.emb.expand(batch)

            def run():  # through unet_forward: the family's added conditioning (SDXL) is priced too
                if grad:
                    xx = x.clone().requires_grad_(True)
                    unet_forward(m, xx, 500, emb).sum().backward()
                else:
                    with torch.no_grad():
                        unet_forward(m, x, 500, emb)

            self.cache[key] = _timed(run, m.device)
        return self.cache[key]

    def unet_truncated(self, grad: bool) -> float:
        """One batch-1 pass that stops after drag's supervised block (drag without a mask)."""
        key = ("unet_truncated", 1, grad)
        if key not in self.cache:
            from core.layer_maps import layer_map
            from core.methods.drag.motion import feature_block, unet_with_features

            m = self.model
            block = feature_block(m.unet, layer_map(m))
            x = torch.randn(1, m.latent_channels, *self.hw, device=m.device)

            def run():
                if grad:
                    xx = x.clone().requires_grad_(True)
                    unet_with_features(m, block, xx, 500, self.emb, self.hw, full=False)[1].sum().backward()
                else:
                    with torch.no_grad():
                        unet_with_features(m, block, x, 500, self.emb, self.hw, full=False)

            self.cache[key] = _timed(run, m.device)
        return self.cache[key]

    def vae(self, what: str) -> float:
        if what not in self.cache:
            m = self.model
            lat = torch.randn(1, m.latent_channels, *self.hw, device=m.device)
            img = torch.rand(1, 3, self.hw[0] * m.vae_scale, self.hw[1] * m.vae_scale, device=m.device) * 2 - 1
            if what == "vae_encode":
                fn = lambda: m.encode_image(img)  # noqa: E731
            elif what == "vae_decode":
                def fn():
                    with torch.no_grad():
                        m.decode_latents(lat)
            else:  # decode with gradient to the latent
                def fn():
                    ll = lat.clone().requires_grad_(True)
                    m.decode_latents(ll).sum().backward()
            with torch.no_grad() if what == "vae_encode" else _null():
                self.cache[what] = _timed(fn, m.device)
        return self.cache[what]

    def floor(self, passes: dict) -> float:
        total = 0.0
        for key, n in passes.items():
            if key.startswith("unet_grad_b"):
                b = int(key.rsplit("b", 1)[1])
                total += n * (self.unet(b, True) - self.unet(b, False))
            elif key.startswith("unet_b"):
                b = int(key.rsplit("b", 1)[1])
                total += n * self.unet(b, False)
        # Truncated passes (drag without a mask) are counted among the batch-1 passes above at the
        # price of a whole one: take the part they did not run off again.
        grad_cut = passes.get("unet_truncated_grad", 0)
        plain_cut = passes.get("unet_truncated", 0) - grad_cut
        if plain_cut:
            total -= plain_cut * (self.unet(1, False) - self.unet_truncated(False))
        if grad_cut:
            total -= grad_cut * (self.unet(1, True) - self.unet_truncated(True))
        total += passes.get("vae_encode", 0) * self.vae("vae_encode")
        total += passes.get("vae_decode", 0) * self.vae("vae_decode")
        if passes.get("vae_decode_grad"):
            total += passes["vae_decode_grad"] * (self.vae("vae_decode_grad") - self.vae("vae_decode"))
        return total


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def run_once(engine: Engine, request: EditRequest, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_preview = []
    started = time.perf_counter()

    def sink(ev):
        if ev.preview is not None and not first_preview:
            first_preview.append(time.perf_counter() - started)

    result = engine.run(request, sink)
    _sync(device)
    seconds = time.perf_counter() - started
    out = dict(seconds=round(seconds, 3), stages={k: round(v, 3) for k, v in result.stages.items()},
               first_preview_s=round(first_preview[0], 3) if first_preview else None,
               passes=dict(result.passes))
    if device.type == "cuda":
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    return out


def provide_random_aux(model) -> None:
    """SD 1.5-sized random CLIP ViT-B/16 and DINO ViT-B/8 for methods that need them (no download)."""
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    from core.aux_models import provide_aux

    with torch.device(model.device):
        clip = CLIPModel(CLIPConfig(vision_config={"patch_size": 16}))
        dino = ViTModel(ViTConfig(patch_size=8), add_pooling_layer=False)
    from core.methods.diffuseit.method import CLIP_DEFAULT

    with torch.device(model.device):
        clip32 = CLIPModel(CLIPConfig(vision_config={"patch_size": 32}))  # DiffuseIT's default CLIP
    dtype = model.dtype
    provide_aux("clip", model, clip.to(dtype=dtype), processor=model.tokenizer)
    provide_aux("clip", model, clip32.to(dtype=dtype), processor=model.tokenizer, source=CLIP_DEFAULT)
    provide_aux("dino", model, dino.to(dtype=dtype))


def main(argv=None) -> dict:
    if "--batch" in (sys.argv[1:] if argv is None else argv):  # folder batches: tools/bench_batch.py
        from tools.bench_batch import main as bench_batch

        return bench_batch(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="The demo model on the CPU with reduced steps.")
    ap.add_argument("--quick", action="store_true",
                    help="Reduced steps (as --tiny) on the SD 1.5 architecture: checks the full path on any machine.")
    ap.add_argument("--methods", help="Comma-separated method names (default: all registered).")
    ap.add_argument("--size", type=int, help="Image side in pixels (default: the family's native size, "
                                             "512 for SD 1.5; --tiny: 64).")
    ap.add_argument("--low-vram", action="store_true",
                    help="Low-VRAM mode (core/offload.py): compare peak_gpu_gb with a run without it.")
    ap.add_argument("--family", default="sd1", choices=["sd1", "sd2", "sdxl"],
                    help="Model family whose architecture is built with random weights (default sd1).")
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", help="Also write the JSON here.")
    args = ap.parse_args(argv)

    engine = Engine()
    if args.tiny:
        device = torch.device(args.device or "cpu")
        model = engine.load_model(ModelSpec("demo", str(device), args.precision))
        size = args.size or model.native_size
    else:
        from core.device import pick_device, pick_dtype
        from tools.random_models import build_random

        device = pick_device(args.device or "auto")
        dtype = pick_dtype(device, args.precision)
        model = build_random(args.family, device, dtype)
        provide_random_aux(model)
        if args.low_vram:
            from core.offload import enable_low_vram

            enable_low_vram(model)
        engine.models._model, engine.models._key = model, (model.model_id,)
        engine.models.get = lambda spec, progress=None: model
        size = args.size or model.family_info.native_size
    image = bench_image(size)
    wanted = set(args.methods.split(",")) if args.methods else None
    methods = [m for m in all_methods() if wanted is None or m.name in wanted]

    latent_hw = (size // model.vae_scale, size // model.vae_scale)
    costs = UnitCosts(model, latent_hw)
    report = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        device_type=device.type, precision=str(model.dtype).replace("torch.", ""), model=model.model_id,
        family=model.family, low_vram=bool(getattr(model, "low_vram", False)), size=size, torch=torch.__version__, diffusers=__import__("diffusers").__version__,
        date=datetime.date.today().isoformat(), tiny=args.tiny, reduced_steps=args.tiny or args.quick,
        methods={})
    for method in methods:
        request = EditRequest(method.name, image, params_for(method, size, args.tiny or args.quick),
                              model=ModelSpec("demo", str(device), args.precision))
        engine.clear_caches()
        cold = run_once(engine, request, device)
        warm = run_once(engine, request, device)
        floor_cold = costs.floor(cold["passes"])
        floor_warm = costs.floor(warm["passes"])
        passes = cold["passes"]
        report["methods"][method.name] = dict(
            cold=cold, warm=warm,
            unet_forward=passes.get("unet", 0), unet_backward=passes.get("unet_grad", 0),
            vae_passes=passes.get("vae_encode", 0) + passes.get("vae_decode", 0),
            floor_cold_s=round(floor_cold, 3), floor_warm_s=round(floor_warm, 3),
            ratio_cold=round(cold["seconds"] / floor_cold, 2) if floor_cold > 0 else None,
            ratio_warm=round(warm["seconds"] / floor_warm, 2) if floor_warm > 0 else None)
        print(f"{method.name}: cold {cold['seconds']} s, warm {warm['seconds']} s", file=sys.stderr)
    report["unit_costs_s"] = {f"{k[0]}_b{k[1]}{'_grad' if k[2] else ''}" if isinstance(k, tuple) else k:
                              round(v, 5) for k, v in costs.cache.items()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
