"""What drag's truncated passes save on SD 1.5 (issue 23): one UNet pass built from the shipped
config (random weights, no download), batch 1, full against stopped after `up_blocks[2]` (the block
motion supervision reads), forward and forward + backward.

    python -m tools.bench_truncation [--latent 32] [--threads 2] [--device cpu]

Prints one JSON line: seconds of each kind of pass and the share of the pass that is saved."""
from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import UNet2DConditionModel

from resources import resource_path


class _Stop(Exception):
    pass


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent", type=int, default=32, help="latent side (64 = a 512 px picture)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = UNet2DConditionModel.load_config(resource_path("configs", "stable-diffusion-v1-5", "unet"))
    unet = UNet2DConditionModel.from_config(cfg).to(device).eval()
    x = torch.randn(1, 4, args.latent, args.latent, device=device)
    emb = torch.randn(1, 77, cfg["cross_attention_dim"], device=device)
    t = torch.tensor(500, device=device)
    grabbed = {}

    def stop(_module, _inputs, output):
        grabbed["f"] = output
        raise _Stop

    def run(truncated: bool, grad: bool) -> None:
        handle = unet.up_blocks[2].register_forward_hook(stop) if truncated else None
        xx = x.clone().requires_grad_(grad)
        try:
            with torch.set_grad_enabled(grad):
                try:
                    out = unet(xx, t, encoder_hidden_states=emb).sample
                except _Stop:
                    out = grabbed["f"]
                if grad:
                    out.float().sum().backward()
        finally:
            if handle is not None:
                handle.remove()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    seconds = {}
    for truncated in (False, True):
        for grad in (False, True):
            run(truncated, grad)  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                run(truncated, grad)
            key = ("truncated" if truncated else "full") + ("_grad" if grad else "")
            seconds[key] = round((time.perf_counter() - start) / args.repeats, 3)
    report = {"latent": args.latent, "device": args.device, "threads": args.threads, **seconds,
              "saved_forward": round(1 - seconds["truncated"] / seconds["full"], 3),
              "saved_forward_backward": round(1 - seconds["truncated_grad"] / seconds["full_grad"], 3)}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
