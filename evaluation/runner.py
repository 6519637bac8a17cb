"""The evaluation loop: every sample of a benchmark edited by one method and measured.

Resumable: the results file is rewritten (atomically) after every sample, and a run pointed at an
existing results file of the same benchmark, method, model and options skips the samples that
finished and retries those that failed. A sample that cannot be read or edited becomes a failed row
with a one-line error naming it; the run goes on. The pseudo-methods `identity` (the input
unchanged: the baseline), `text-to-image` (the model drawing the sample's prompt — the target prompt
of a text edit — from noise: the control an edit that ignored the picture would score) and `truth`
(ShapesBench's ground-truth target: the best a method could do) run through the same measures."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from core.errors import Cancelled, InvalidInput, MalleableError, ModelUnavailable
from core.models import ModelSpec

from . import method_inputs, results
from .formats import DragSample, SampleRef, TextSample, list_drag_samples, list_text_samples
from .method_inputs import IDENTITY, TEXT_TO_IMAGE

TRUTH = "truth"
PSEUDO_METHODS = (IDENTITY, TEXT_TO_IMAGE, TRUTH)
# The text-to-image control's sampling: SD's usual settings (DDIM, 50 steps, guidance 7.5 — PnP's and
# StyleDiffusion's defaults), seed 0, so every method is compared with one drawing per prompt.
CONTROL_STEPS, CONTROL_GUIDANCE, CONTROL_SEED = 50, 7.5, 0
LAYOUTS = {"drag": "DragBench", "text": "PIE-Bench"}


@dataclass
class RunConfig:
    kind: str                                   # "drag" or "text"
    root: Path
    method: str
    overrides: dict = field(default_factory=dict)
    model: ModelSpec = field(default_factory=lambda: ModelSpec("demo"))
    out: Optional[Path] = None                  # results JSON; None = keep in memory only
    images: Optional[Path] = None               # where result PNGs go (default: beside out)
    limit: Optional[int] = None
    dino: Optional[str] = None                  # structure distance's DINO (default: beside the model)
    clip: Optional[str] = None                  # CLIP score's CLIP (default: beside the model)
    dift_model: Optional[str] = None            # the model whose UNet gives DIFT features (default: model)
    shard: Optional[tuple[int, int]] = None     # (k, n): only samples k-1, k-1+n, … (1-based k), see run()
    sampler: str = "ddim"                       # the edits' sampler (lcm/tcd: few-step, for the methods that allow it)


def list_samples(kind: str, root: Path) -> list[SampleRef]:
    return list_drag_samples(root) if kind == "drag" else list_text_samples(root)


def images_dir(cfg: RunConfig) -> Optional[Path]:
    if cfg.images is not None:
        return cfg.images
    return cfg.out.with_name(cfg.out.stem + "_images") if cfg.out is not None else None


def image_name(sample_id: str) -> str:
    return sample_id.replace("/", "__").replace("\\", "__") + ".png"


def stored_path(path: Path, out: Optional[Path]) -> str:
    """`path` as the results file records it: relative to the file's folder (absolute without one)."""
    if out is not None:
        try:
            return Path(os.path.relpath(path.resolve(), out.resolve().parent)).as_posix()
        except ValueError:  # another drive
            pass
    return str(path.resolve())


def method_defaults(method: str) -> dict:
    if method in PSEUDO_METHODS:
        return {}
    from core.registry import get_method

    return {f.name: results.finite_or_flag({"v": f.default})["v"] for f in get_method(method).params.fields()}


class Evaluator:
    """Edits one sample and measures it. Encoders load on first use; one that cannot load makes its
    measures null, and `unavailable` says why."""

    def __init__(self, cfg: RunConfig, engine=None):
        from core.engine import Engine

        self.cfg = cfg
        self.engine = engine or Engine()
        self.unavailable: dict[str, str] = {}
        self._aux: dict[str, object] = {}
        self._dift = None
        self._lpips = None

    # ---- the model and the measuring encoders, loaded once --------------------------------------
    @property
    def model(self):
        return self.engine.load_model(self.cfg.model)

    def dift(self):
        if self._dift is None:
            from core.models import load_model

            from .metrics.dift import DiftFeatures

            m = self.model if not self.cfg.dift_model else load_model(
                ModelSpec(self.cfg.dift_model, self.cfg.model.device, self.cfg.model.precision))
            self._dift = DiftFeatures(m)
        return self._dift

    def _encoder(self, kind: str, measures: tuple, build: Callable):
        if kind not in self._aux:
            from core.aux_models import load_aux

            try:
                self._aux[kind] = build(load_aux(kind, self.model, getattr(self.cfg, kind), needed_by="malleable-eval"))
            except ModelUnavailable as e:
                self._aux[kind] = None
                for m in measures:
                    self.unavailable[m] = str(e).splitlines()[0]
        return self._aux[kind]

    def structure(self):
        from .metrics.vit import StructureDistance

        return self._encoder("dino", ("structure_distance",), StructureDistance)

    def clip_score(self):
        from .metrics.vit import ClipScore

        return self._encoder("clip", ("clip_score", "clip_score_edited"), ClipScore)

    def lpips(self):
        if self._lpips is None:
            from .metrics.lpips import load_lpips

            fn, why = load_lpips(self.model.device)
            self._lpips = fn or False
            if not fn:
                for m in ("image_fidelity", "background_lpips"):
                    self.unavailable[m] = why
        return self._lpips or None

    # ---- one sample ---------------------------------------------------------------------------------
    def edit(self, sample) -> tuple[np.ndarray, dict]:
        """(result RGB uint8, row fields from the edit itself)."""
        kind, method = self.cfg.kind, self.cfg.method
        if method == IDENTITY:
            return sample.image, {"seconds": 0.0, "passes": {}}
        if method == TRUTH:
            if sample.truth is None:
                raise InvalidInput(f"sample {sample.id}: no ground truth (--method truth needs ShapesBench).")
            return sample.truth.target, {"seconds": 0.0, "passes": {}}
        if method == TEXT_TO_IMAGE:
            t0 = time.perf_counter()
            image = self.drawn_from_text(sample)
            return image, {"seconds": time.perf_counter() - t0, "passes": {"unet": CONTROL_STEPS,
                                                                           "unet_samples": 2 * CONTROL_STEPS}}
        from core.engine import EditRequest

        params = method_inputs.params_for(kind, method, sample, self.cfg.overrides)
        try:
            res = self.engine.run(EditRequest(method, sample.image, params,
                                              mask=method_inputs.mask_for(kind, method, sample), model=self.cfg.model,
                                              sampler=self.cfg.sampler))
        except Cancelled:
            raise
        except MalleableError as e:
            raise type(e)(f"sample {sample.id}: {e}") from None
        fields = {"seconds": res.seconds, "passes": res.passes}
        if "handles" in res.info:
            fields["method_handles"] = res.info["handles"]  # where the method itself tracked them
        return np.asarray(res.image.convert("RGB")), fields

    def drawn_from_text(self, sample) -> np.ndarray:
        """The model drawing the sample's prompt from noise at its working size, back at its size."""
        import torch

        from core.images import from_working_tensor, plan_working_size
        from core.sampling import draw_from_text

        model = self.model
        prompt = sample.target_prompt if self.cfg.kind == "text" else sample.prompt
        h, w = sample.image.shape[:2]
        place = plan_working_size(w, h, model.native_size, model.grid)
        latent = draw_from_text(model, prompt, place.work_w, place.work_h, CONTROL_SEED, CONTROL_GUIDANCE,
                                CONTROL_STEPS)
        with torch.no_grad():
            image = model.decode_latents(latent)
        return from_working_tensor(image, place)

    def measure_drag(self, s: DragSample, result: np.ndarray) -> dict:
        from .metrics.dift import initial_distance, mean_distance
        from .metrics.pixels import psnr, ssim
        from .metrics.truth import drag_truth

        dift = self.dift()
        md, landed = mean_distance(dift(s.image, s.prompt), dift(result, s.prompt), s.points)
        h, w = result.shape[:2]
        outside = (s.mask < 0.5) if s.mask is not None else None
        lp = self.lpips()
        row = {"mean_distance": md, "mean_distance_512": md * 512 / max(w, h), "landed": landed,
               "initial_distance": initial_distance(s.points),
               "image_fidelity": 1 - lp(s.image, result, side=224) if lp else None,
               "psnr_outside_mask": psnr(s.image, result, outside) if outside is not None else None,
               "ssim_outside_mask": ssim(s.image, result, outside) if outside is not None else None}
        truth = drag_truth(result, s.truth) if s.truth is not None else {}
        return {**row, **{k: truth.get(k) for k in ("mean_distance_truth", "object_found", "silhouette_iou",
                                                     "psnr_truth", "prompt_style")}}

    def measure_text(self, s: TextSample, result: np.ndarray) -> dict:
        from .metrics.pixels import mse, psnr, ssim
        from .metrics.truth import text_truth

        outside = ~s.mask if s.mask is not None else None
        structure, clip, lp = self.structure(), self.clip_score(), self.lpips()
        row = {"structure_distance": structure(s.image, result) if structure else None,
               "background_psnr": psnr(s.image, result, outside) if outside is not None else None,
               "background_mse": mse(s.image, result, outside) if outside is not None else None,
               "background_ssim": ssim(s.image, result, outside) if outside is not None else None,
               "background_lpips": (lp(s.image * outside[..., None], result * outside[..., None])
                                    if lp and outside is not None else None),
               "clip_score": clip(result, s.target_prompt) if clip else None,
               "clip_score_edited": clip(result, s.target_prompt, s.mask) if clip and s.mask is not None else None}
        truth = text_truth(result, s.truth) if s.truth is not None else {}
        keys = ("centroid_shift", "object_found", "silhouette_iou", "attribute_success", "others_kept", "read",
                "psnr_truth", "prompt_style")
        return {**row, **{k: truth.get(k) for k in keys}}

    def evaluate(self, ref: SampleRef, image_dir: Optional[Path]) -> dict:
        """One row; a bad sample or a failed edit is a failed row naming the sample."""
        t0 = time.perf_counter()
        try:
            sample = ref.load()
            result, fields = self.edit(sample)
            measures = (self.measure_drag if self.cfg.kind == "drag" else self.measure_text)(sample, result)
        except (Cancelled, KeyboardInterrupt, ModelUnavailable):
            raise  # not the sample's fault: the whole run stops (and resumes later)
        except MalleableError as e:
            msg = str(e) if str(e).startswith(f"sample {ref.id}") else f"sample {ref.id}: {e}"
            return {"id": ref.id, "group": "", "status": "failed", "error": " ".join(msg.split())}
        except Exception as e:  # a bug in a method must not end a long run; the row says what broke
            return {"id": ref.id, "group": "", "status": "failed",
                    "error": " ".join(f"sample {ref.id}: {type(e).__name__}: {e}".split())}
        image = None
        if image_dir is not None:
            image_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(result).save(image_dir / image_name(ref.id))
            image = stored_path(image_dir / image_name(ref.id), self.cfg.out)
        row = {"id": ref.id, "group": sample.group, "status": "ok", **measures, **fields, "image": image,
               "wall_seconds": time.perf_counter() - t0}
        return results.finite_or_flag(row)


def shard_path(out: Path, k: int, n: int) -> Path:
    return out.with_name(f"{out.stem}.shard{k}of{n}{out.suffix}")


def finished_rows(out: Path, doc: dict) -> tuple[dict, dict]:
    """The ok rows already written for this run, in `out` and in any shard files beside it, and the
    measures they found unavailable; InvalidInput when one of those files belongs to another run."""
    done, unavailable = {}, {}
    for path in [out] + sorted(out.parent.glob(f"{out.stem}.shard*of*{out.suffix}")):
        if not path.is_file():
            continue
        old = results.read_results(path)
        why = results.same_run(old, doc)
        if why:
            raise InvalidInput(f"{path} belongs to another run ({why}): choose another --out, or delete it to "
                               "start again.")
        done.update({r["id"]: r for r in old["samples"] if r.get("status") == "ok"})
        unavailable.update(old.get("unavailable", {}))
    return done, unavailable


def run(cfg: RunConfig, progress: Optional[Callable] = None, engine=None, log: Optional[Callable] = None) -> dict:
    """Runs (or resumes) the evaluation described by `cfg`; returns the results document.
    progress(i, total, sample_id, row, skipped) after each sample; log(line) for each failed one.

    With cfg.shard = (k, n), only every n-th sample from the k-th is run, into OUT.shardKofN.json:
    n processes can share one run. A later run without a shard finds their rows finished (as it
    finds those of OUT itself), so it only merges them into OUT."""
    log = log or (lambda line: sys.stderr.write(line + "\n"))
    if cfg.method not in PSEUDO_METHODS:
        method_inputs.check_method(cfg.kind, cfg.method)
    if cfg.method not in PSEUDO_METHODS:
        from core.registry import get_method
        from core.request import check_sampler

        check_sampler(get_method(cfg.method), cfg.sampler)  # before any sample runs
    refs = list_samples(cfg.kind, cfg.root)
    if cfg.limit is not None:
        refs = refs[:cfg.limit]
    out = cfg.out
    if cfg.shard is not None:
        k, n = cfg.shard
        if not 1 <= k <= n:
            raise InvalidInput(f"shard {k}/{n}: K must be between 1 and N.")
        if out is None:
            raise InvalidInput("a shard needs --out: its rows are merged from files.")
        refs = refs[k - 1::n]
        out = shard_path(cfg.out, k, n)
    doc = results.header(cfg.kind, LAYOUTS[cfg.kind], cfg.root, len(refs), cfg.method, cfg.model.source,
                         results.finite_or_flag({"v": cfg.overrides})["v"], method_defaults(cfg.method),
                         cfg.sampler)
    done: dict[str, dict] = {}
    if cfg.out is not None:
        done, doc["unavailable"] = finished_rows(cfg.out, doc)
    evaluator = Evaluator(cfg, engine)
    rows: dict[str, dict] = {}
    image_dir = images_dir(cfg)

    def save(complete: bool) -> None:
        doc["samples"] = [rows[r.id] for r in refs if r.id in rows]
        doc["summary"] = results.summarise(cfg.kind, doc["samples"])
        doc["unavailable"] = {k: v for k, v in {**doc["unavailable"], **evaluator.unavailable}.items()
                              if k in results.MEASURES[cfg.kind]}
        doc["complete"] = complete
        if out is not None:
            results.write_atomic(out, doc)

    for i, ref in enumerate(refs):
        if ref.id in done:
            rows[ref.id] = done[ref.id]
            if progress:
                progress(i, len(refs), ref.id, rows[ref.id], True)
            continue
        row = evaluator.evaluate(ref, image_dir)
        rows[ref.id] = row
        if row["status"] == "failed":
            log(f"malleable-eval: {row['error']}")
        save(False)
        if progress:
            progress(i, len(refs), ref.id, row, False)
    save(complete=True)
    return doc

