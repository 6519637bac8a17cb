"""End-to-end check of the real-size single-file path, offline: random SD 1.5 weights -> one
original-layout .safetensors -> core.models.load_single_file with the shipped configs -> same weights.

    HF_HUB_OFFLINE=1 python -m tools.check_sd15_single_file [--device cpu] [--keep /tmp/sd15.safetensors]

Needs about 9 GB of RAM on a CPU and 2 GB of disk; prints JSON. Not a test: too big for the test machine.
"""
from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None) -> None:
    from safetensors.torch import save_file

    from core.models import load_single_file
    from tools.convert_to_single_file import to_ldm_state_dict
    from tools.random_models import build_random_sd15

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, help="write the checkpoint here and keep it")
    args = ap.parse_args(argv)
    device = torch.device(args.device)

    model = build_random_sd15(device, seed=3)
    reference = {n: {k: v.half().cpu() for k, v in getattr(model, n).state_dict().items()}
                 for n in ("unet", "vae", "text_encoder")}
    sd = {k: v.half().cpu() for k, v in to_ldm_state_dict(model.unet, model.vae, model.text_encoder).items()}
    del model
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "sd15_random.safetensors"
        save_file(sd, str(path))
        n_keys = len(sd)
        del sd
        t = time.perf_counter()
        loaded = load_single_file(path, device, torch.float32)
        seconds = time.perf_counter() - t
    mismatches = {}
    for name, ref in reference.items():
        got = getattr(loaded, name).state_dict()
        mismatches[name] = sum(1 for k, v in ref.items() if not k.endswith("position_ids")
                               and (k not in got or not torch.equal(got[k].half().cpu(), v)))
    print(json.dumps({"keys": n_keys, "load_s": round(seconds, 2), "native_size": loaded.native_size,
                      "mismatched_tensors": mismatches}))
    if any(mismatches.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
