"""Distil a few-step LCM-LoRA for the embedded demo model (latent consistency distillation), so the
"Fast (LCM)" path can be tried and measured on any machine without a download.

    python -m tools.train_demo_lcm [--steps 1500] [--threads 2] [--out resources/models/demo/lcm-lora.safetensors]

Latent consistency distillation (Luo et al., 2023), LoRA variant: the student is the demo UNet with
a LoRA (rank 16 on its attention and feed-forward projections and resnet convolutions); the teacher
is the frozen demo UNet with classifier-free guidance. For a ShapesWorld latent x0 and a timestep t
of the 50-step DDIM skeleton, x_t is noised, the teacher takes one guided DDIM step to s = t − 20,
and the student is trained so that its consistency function f(x_t, t) = c_skip(t)·x_t +
c_out(t)·x̂0(x_t, t) matches f(x̂_s, s) of itself without gradient (the target network; LCM-LoRA
uses no EMA). Loss: pseudo-Huber, c = 0.001. The teacher's guidance is fixed (the student has no
guidance input), at the demo's usual 5. Seeded; CPU only; the saved file is diffusers-format LoRA
(read by core/loras.py like any user LoRA). Training is recorded in the model's training.json."""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from resources import resource_path

DEMO = resource_path("models", "demo")
OUT = DEMO / "lcm-lora.safetensors"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
           "conv1", "conv2", "time_emb_proj"]
SKELETON = 50         # DDIM steps the consistency is defined on (LCM's original_inference_steps)
GUIDANCE = 5.0        # the teacher's classifier-free guidance
SIGMA_DATA, TIMESTEP_SCALING, HUBER_C = 0.5, 10.0, 0.001


def boundary(t: torch.Tensor):
    """LCM's c_skip, c_out: f(x, 0) = x, otherwise the predicted x0."""
    scaled = t.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2)
    c_out = scaled / (scaled ** 2 + SIGMA_DATA ** 2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def _scenes(seed: int, n: int):
    try:
        from evaluation.shapesworld import scenes
    except ImportError:  # before the evaluation package existed
        from tools.shapesworld import scenes
    return list(scenes(seed, n, 64))


def encode_pool(model, n: int, seed: int, batch: int = 128):
    pool = _scenes(seed, n)
    latents = []
    with torch.no_grad():
        for i in range(0, n, batch):
            imgs = torch.from_numpy(np.stack([np.asarray(s.image) for s in pool[i:i + batch]])).permute(0, 3, 1, 2)
            latents.append(model.encode_image(imgs.float() / 127.5 - 1))
    return torch.cat(latents), [s.caption for s in pool]


def train(steps: int, batch: int, lr: float, rank: int, seed: int, pool_size: int, log_every: int = 50) -> dict:
    from peft import LoraConfig, get_peft_model_state_dict

    from core.models import ModelSpec, load_model
    from core.schedule import DDIMSchedule

    torch.manual_seed(seed)
    random.seed(seed)
    teacher = load_model(ModelSpec("demo", device="cpu", precision="fp32"))
    student = load_model(ModelSpec("demo", device="cpu", precision="fp32"))  # a second copy gets the LoRA
    student.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=True))
    params = [p for n, p in student.unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    latents, captions = encode_pool(teacher, pool_size, seed + 1000)
    cond_all = teacher.encode_text(captions).embeds.float()
    uncond = teacher.encode_text("").embeds.float()
    sched = DDIMSchedule(teacher.scheduler_config, SKELETON)
    alphas = sched.alphas_cumprod.float()
    skel = torch.tensor(sched.timesteps)            # 981 … 1, descending, step 20
    gen = torch.Generator().manual_seed(seed)
    history, started = [], time.time()
    for step in range(steps):
        idx = torch.randint(0, len(latents), (batch,), generator=gen)
        x0, cond = latents[idx], cond_all[idx]
        k = torch.randint(0, SKELETON - 1, (batch,), generator=gen)   # t = skel[k], s = skel[k + 1]
        t, s = skel[k], skel[k + 1]
        noise = torch.randn(x0.shape, generator=gen)
        a_t, a_s = alphas[t].view(-1, 1, 1, 1), alphas[s].view(-1, 1, 1, 1)
        x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise
        with torch.no_grad():
            out = teacher.unet(torch.cat([x_t, x_t]), torch.cat([t, t]),
                               encoder_hidden_states=torch.cat([uncond.expand(batch, -1, -1), cond])).sample
            e_u, e_c = out.chunk(2)
            eps = e_u + GUIDANCE * (e_c - e_u)
            x0_teacher = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            x_s = a_s.sqrt() * x0_teacher + (1 - a_s).sqrt() * eps     # one guided DDIM step
            eps_s = student.unet(x_s, s, encoder_hidden_states=cond).sample
            skip_s, out_s = boundary(s)
            target = skip_s * x_s + out_s * (x_s - (1 - a_s).sqrt() * eps_s) / a_s.sqrt()
        eps_t = student.unet(x_t, t, encoder_hidden_states=cond).sample
        skip_t, out_t = boundary(t)
        pred = skip_t * x_t + out_t * (x_t - (1 - a_t).sqrt() * eps_t) / a_t.sqrt()
        loss = (torch.sqrt((pred - target) ** 2 + HUBER_C ** 2) - HUBER_C).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in opt.param_groups:  # cosine decay
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.step()
        history.append(float(loss.detach()))
        if (step + 1) % log_every == 0:
            print(f"{time.strftime('%H:%M:%S')} step {step + 1}/{steps} loss {np.mean(history[-log_every:]):.5f}",
                  flush=True)
    state = get_peft_model_state_dict(student.unet)
    return dict(state=state, seconds=time.time() - started, losses=history)


def save(state: dict, out: Path) -> None:
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    out = Path(out)
    StableDiffusionLoraLoaderMixin.save_lora_weights(out.parent, unet_lora_layers=state, weight_name=out.name)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--pool", type=int, default=4096, help="ShapesWorld scenes to distil on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = train(args.steps, args.batch, args.lr, args.rank, args.seed, args.pool)
    save(run["state"], args.out)
    record = dict(what="LCM-LoRA distilled from the demo UNet (tools/train_demo_lcm.py)",
                  command=f"python -m tools.train_demo_lcm --steps {args.steps} --batch {args.batch} --lr {args.lr} "
                          f"--rank {args.rank} --pool {args.pool} --seed {args.seed}",
                  seconds=round(run["seconds"]), final_loss=round(float(np.mean(run["losses"][-100:])), 5),
                  machine=dict(cpu=platform.processor() or platform.machine(), threads=args.threads),
                  date=time.strftime("%Y-%m-%d"))
    meta = DEMO / "training.json"
    if args.out.parent == DEMO and meta.is_file():
        data = json.loads(meta.read_text())
        data["lcm_lora"] = record
        meta.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
