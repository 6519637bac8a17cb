"""`python -m tools.bench --batch`: images per minute for a folder batch, four ways, on this machine:

- `local`: `malleable-edit batch` in this process (one LocalRunner, the model loaded once);
- `per_process`: one `malleable-edit` process per image (what a shell loop does: the model and the
  libraries are loaded again for every image), with the same values and the batch's derived seeds,
  on the first `--per-process-images` images;
- `ray_1`, `ray_2`, ...: the same batch as a Ray Data pipeline on a local cluster with 1, 2, ... CPU
  actors (needs the `cluster` extra).

Every run uses one torch thread per worker (Ray gives each CPU actor one, and the local runs are
set to match), so the rows compare the runners, not thread settings. The images are ShapesWorld
scenes at the demo model's size; the method is PnP restyling the red shape blue. Prints one JSON
object, with the load average of the machine before each run and, on paper, the throughput of N GPU
actors from one GPU's seconds per image (`--gpu-seconds`, measured elsewhere with `tools.bench`).
Benchmarks are not tests: nothing here asserts a time."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, count: int, size: int) -> None:
    from tools.shapesworld import sample_scene

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scene = sample_scene(rng, size, n_shapes=1, shape="circle", colour="red")
        scene.image.save(folder / f"scene_{i:03d}.png")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed_batch(spec_args: dict, backend, out: Path) -> dict:
    from core.batch import BatchSpec, plan, run_batch

    load = _load()
    started = time.perf_counter()
    spec = BatchSpec(**spec_args, output_dir=str(out), redo=True)
    summary = run_batch(spec, plan(spec), backend)
    seconds = time.perf_counter() - started
    per_image = [r["seconds"] for r in summary.rows if r["status"] == "ok"]
    return dict(images=summary.ok, failed=summary.failed, seconds=round(seconds, 2),
                images_per_minute=round(60 * summary.ok / seconds, 2),
                median_image_s=round(statistics.median(per_image), 3) if per_image else None,
                workers=summary.workers, load_before=load)


def _per_process(spec_args: dict, out: Path, method_flags: list[str], count: int) -> dict:
    from core.batch import BatchSpec, plan

    spec = BatchSpec(**spec_args, output_dir=str(out))
    items = plan(spec)[:count]  # each costs a whole start-up: a few show the rate
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load = _load()
    started = time.perf_counter()
    for item in items:
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "editor_app.cli", spec.method, str(item.source(spec)), "-o",
               str(item.destination(spec)), "--model", spec.model.source, "--device", spec.model.device,
               "--seed", str(item.params["seed"]), "--quiet", *method_flags]
        subprocess.run(cmd, check=True, env=env)
    seconds = time.perf_counter() - started
    return dict(images=len(items), seconds=round(seconds, 2), images_per_minute=round(60 * len(items) / seconds, 2),
                load_before=load)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m tools.bench --batch", description=__doc__.splitlines()[0])
    ap.add_argument("--batch", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="Image side (default 64, the demo model's).")
    ap.add_argument("--steps", type=int, default=20, help="PnP steps (default 20).")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ray-workers", default="1,2", help="Actor counts for the Ray runs ('' for none).")
    ap.add_argument("--per-process-images", type=int, default=4,
                    help="Images for the process-per-image run (default 4; 0 skips it).")
    ap.add_argument("--gpu-seconds", type=float, default=None,
                    help="One GPU's seconds per image (from tools.bench): prints the N-GPU estimate.")
    ap.add_argument("--out", help="Also write the JSON here.")
    args = ap.parse_args(argv)

    import torch

    from core import ModelSpec
    from core.batch import LocalBatch
    from tools.bench import BENCH_PARAMS

    torch.set_num_threads(1)  # as a Ray CPU actor runs
    values = dict(BENCH_PARAMS["pnp"], steps=args.steps)
    method_flags = ["--prompt", values["prompt"], "--source-prompt", values["source_prompt"],
                    "--steps", str(args.steps)]
    report = dict(date=datetime.date.today().isoformat(), machine=platform.processor() or platform.machine(),
                  cpus=os.cpu_count(), torch=torch.__version__, torch_threads_per_worker=1, method="pnp",
                  steps=args.steps, size=args.size, model=args.model, device=args.device, runs={})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "in", args.images, args.size)
        spec_args = dict(method="pnp", input_dir=str(tmp / "in"), params=values,
                         model=ModelSpec(args.model, args.device))
        report["runs"]["local"] = _timed_batch(spec_args, LocalBatch(), tmp / "local")
        print(f"local: {report['runs']['local']}", file=sys.stderr)
        if args.per_process_images > 0:
            report["runs"]["per_process"] = _per_process(spec_args, tmp / "single", method_flags,
                                                         args.per_process_images)
            print(f"per process: {report['runs']['per_process']}", file=sys.stderr)
        counts = [int(n) for n in args.ray_workers.split(",") if n.strip()]
        if counts:
            import ray

            from core.ray_runner import RayRunner

            ray.init(num_cpus=max(os.cpu_count() or 1, max(counts) + 2), include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR")
            report["ray"] = ray.__version__
            try:
                for n in counts:
                    runner = RayRunner(workers=n)
                    report["runs"][f"ray_{n}"] = _timed_batch(spec_args, runner, tmp / f"ray_{n}")
                    runner.shutdown()
                    print(f"ray {n}: {report['runs'][f'ray_{n}']}", file=sys.stderr)
            finally:
                ray.shutdown()
    runs = report["runs"]
    if "per_process" in runs:
        report["model_load_saving"] = round(runs["local"]["images_per_minute"] / runs["per_process"]["images_per_minute"], 2)
    if args.gpu_seconds:
        # Each GPU actor works on its own image: N of them give N times one's rate, less the per-image
        # cost Ray adds (measured here as ray_1's median image time over the local one's).
        overhead = 0.0
        if "ray_1" in runs and runs["ray_1"]["median_image_s"] and runs["local"]["median_image_s"]:
            overhead = max(0.0, runs["ray_1"]["median_image_s"] - runs["local"]["median_image_s"])
        per = args.gpu_seconds + overhead
        report["gpu_estimate"] = dict(seconds_per_image=args.gpu_seconds, ray_overhead_s=round(overhead, 3),
                                      images_per_minute={n: round(60 * n / per, 1) for n in (1, 2, 4, 8)})
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report
