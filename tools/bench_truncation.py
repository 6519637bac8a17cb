"""What drag's truncated passes save (issue 23): one UNet pass of a model built from the shipped
configs (random weights, no download), batch 1, whole against stopped after the block motion
supervision reads (SD 1.x: `up_blocks[2]`), forward and forward + backward. The passes are
tools/bench.py's own unit costs, so the numbers are the prices its floor uses.

    python -m tools.bench_truncation [--latent 32] [--family sd1] [--threads 2] [--device cpu]

Prints one JSON line: seconds of each kind of pass and the share of the pass that is saved."""
from __future__ import annotations

import argparse
import json

import torch


def main(argv=None) -> dict:
    from tools.bench import UnitCosts
    from tools.random_models import build_random

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent", type=int, default=32, help="latent side (64 = a 512 px SD 1.5 picture)")
    ap.add_argument("--family", default="sd1", choices=["sd1", "sd2", "sdxl"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    costs = UnitCosts(build_random(args.family, args.device), (args.latent, args.latent))
    seconds = {"full": costs.unet(1, False), "full_grad": costs.unet(1, True),
               "truncated": costs.unet_truncated(False), "truncated_grad": costs.unet_truncated(True)}
    report = {"latent": args.latent, "family": args.family, "device": args.device, "threads": args.threads,
              **{k: round(v, 3) for k, v in seconds.items()},
              "saved_forward": round(1 - seconds["truncated"] / seconds["full"], 3),
              "saved_forward_backward": round(1 - seconds["truncated_grad"] / seconds["full_grad"], 3)}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
