"""Every step count a method accepts gives a schedule inside the model's training timesteps: the
documented maximum (1000, SD's own number of training timesteps) used to index timestep 1000."""
import dataclasses
import json

import numpy as np
import pytest

from core import EditRequest
from core.engine import Engine
from core.registry import all_methods
from core.schedule import DDIMSchedule
from resources import resource_path
from tests.test_diffuseit import encoders  # noqa: F401  (fixture: tiny DINO and CLIP folders)
from tests.test_style_diffusion import tiny_clip_model
from tests.tiny import SCHEDULER

CONFIGS = {
    "tiny": SCHEDULER,
    "demo": json.loads(resource_path("models", "demo", "scheduler", "scheduler_config.json").read_text()),
    "sd15": json.loads(resource_path("configs", "stable-diffusion-v1-5", "scheduler",
                                     "scheduler_config.json").read_text()),
}


# Every small count, a stride through the middle, and every count near the top (where the
# offset pushed the ladder out of range).
STEP_COUNTS = sorted(set(range(2, 40)) | set(range(40, 990, 23)) | set(range(990, 1001)))


def test_shipped_schedules_are_the_same_ladder():
    """So checking one of them in every spacing checks them all."""
    keys = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "steps_offset")
    assert len({tuple(c.get(k) for k in keys) for c in CONFIGS.values()}) == 1


@pytest.mark.parametrize("spacing", [None, "leading", "trailing", "linspace"])
def test_every_step_count_stays_in_range(spacing):
    config = dict(CONFIGS["sd15"])
    if spacing:
        config["timestep_spacing"] = spacing
    top = config["num_train_timesteps"] - 1
    highest = max(int(f.metadata["max"]) for m in all_methods() for f in m.params.fields() if f.name == "steps")
    assert highest == 1000
    for steps in STEP_COUNTS:
        s = DDIMSchedule(config, steps)
        ts = s.timesteps
        assert len(ts) == steps and 0 <= ts[-1] and ts[0] <= top, (steps, ts[:2], ts[-2:])
        assert all(a > b for a, b in zip(ts, ts[1:])), steps  # strictly descending
        s.alpha(ts[0])
        s.alpha(s.prev_timestep(steps - 1))


def test_the_maximum_keeps_the_spacing_of_one():
    ts = DDIMSchedule(CONFIGS["sd15"], 1000).timesteps
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 1000


@pytest.fixture(scope="module")
def short_schedule_model(tiny_model, tmp_path_factory):
    """The tiny model trained (so to speak) with 20 timesteps: steps=20 is the same boundary as
    steps=1000 on SD, at a fiftieth of the cost. A tiny CLIP sits beside it for StyleDiffusion."""
    root = tmp_path_factory.mktemp("short_root")
    tiny_clip_model().save_pretrained(root / "clip")
    return dataclasses.replace(tiny_model, model_id="tiny-20", root=root,
                               scheduler_config={**SCHEDULER, "num_train_timesteps": 20}, _text_cache={})


CHEAP = {
    "reconstruct": {}, "pnp": {"prompt": "a dog"},
    "drag": {"points": [[10, 12, 20, 12]], "lora_steps": 1, "drag_steps": 1},
    "quick-drag": {"points": [[10, 12, 20, 12]]},
    "pix2pix-zero": {"source_word": "cat", "target_word": "dog", "source_prompt": "a cat", "reg_steps": 1},
    "style-diffusion": {"source_prompt": "a cat", "prompt": "a dog", "train_iters_scale": 1},
    "diffuseit": {"prompt": "a dog", "resample": 1, "cutouts": 1},
}


@pytest.mark.parametrize("method", sorted(CHEAP))
def test_every_method_runs_with_as_many_steps_as_training_timesteps(short_schedule_model, encoders, method):  # noqa: F811
    assert set(CHEAP) == {m.name for m in all_methods()}
    eng = Engine()
    eng.models.get = lambda spec, progress=None: short_schedule_model
    params = {**CHEAP[method], "steps": 20}
    if method == "diffuseit":
        params.update(encoders)
    img = (np.random.RandomState(0).rand(24, 32, 3) * 255).astype(np.uint8)
    res = eng.run(EditRequest(method, img, params))
    assert res.image.size == (32, 24)
