"""Batch edits over a folder: the plan (which images, which values, which seed and output), the
manifest, and running it through a runner — on this machine (`LocalBatch`) or on a Ray cluster
(`core.ray_runner.RayRunner`). Qt-free and Ray-free: Ray is imported only by core.ray_runner."""
from .execute import Backend, LocalBatch, Summary, load_model, run_batch, run_item
from .manifest import Manifest, read_rows
from .plan import BatchItem, BatchSpec, PlanError, derive_seed, discover, plan

__all__ = ["Backend", "BatchItem", "BatchSpec", "LocalBatch", "Manifest", "PlanError", "Summary", "derive_seed",
           "discover", "load_model", "plan", "read_rows", "run_batch", "run_item"]
