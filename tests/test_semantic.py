"""Semantic checks on the trained demo model with ShapesWorld ground truth (the fast ones; the full
per-method report is tools/semantic_report.py)."""
import random

import numpy as np
import pytest

from tools.eval_demo import analyse, generate
from tools.semantic_report import RED_CIRCLE, read, shift
from tools.shapesworld import sample_scene

ASKED = [dict(shape="circle", colour="red", position="on the left", background="white"),
         dict(shape="square", colour="blue", position="on the right", background="yellow"),
         dict(shape="circle", colour="green", position="at the top", background="black"),
         dict(shape="square", colour="yellow", position="at the bottom", background="blue")]


@pytest.fixture(scope="module")
def demo():
    from core.models import ModelSpec, load_model

    return load_model(ModelSpec("demo", device="cpu"))


def test_demo_draws_the_colour_and_place_it_is_asked(demo):
    scenes = [sample_scene(random.Random(k), 64, n_shapes=1, fill="filled", size="large", two_tone=False, **a)
              for k, a in enumerate(ASKED)]
    images = generate(demo, [s.caption for s in scenes], steps=20, guidance=5.0, seed=0)
    rows = [analyse(img, s) for img, s in zip(images, scenes)]
    assert sum(r["colour_ok"] for r in rows) >= 3, rows
    assert sum(r["position_ok"] for r in rows) >= 3, rows
    assert sum(r["shape_ok"] for r in rows) >= 3, rows
    # a random model draws noise: the caption's background must dominate the picture
    for img, s in zip(images, scenes):
        assert read(img, s).fg.mean() < 0.5


def test_reconstruct_keeps_a_rendered_red_circle_in_place():
    from core.engine import EditRequest, Engine
    from core.models import ModelSpec

    scene = sample_scene(random.Random(0), 64, n_shapes=1, **RED_CIRCLE)
    rgb = np.asarray(scene.image)
    res = Engine().run(EditRequest("reconstruct", rgb, {"prompt": scene.caption, "steps": 20},
                                   model=ModelSpec("demo", device="cpu")))
    before, after = read(rgb, scene), read(np.asarray(res.image.convert("RGB")), scene)
    assert after.colour == "red" and after.shape == "circle"
    assert shift(before, after) <= 3


# Every method's ShapesWorld check from tools/semantic_report.py, on the fast ones' seeds; the
# slow ones (drag's LoRA, StyleDiffusion's mapping network) run on fewer seeds. `need` is how many
# seeds must pass: the report script's full table is the measurement, this guards against breakage.
METHOD_CHECKS = [  # (method, the check's first words, seeds, need)
    ("pnp", "'red circle' -> 'blue circle'", 4, 3),
    ("pix2pix-zero", "red -> blue", 4, 3),
    ("pix2pix-zero", "circle -> square at guidance 7.5", 4, 3),
    ("diffuseit", "image-guided", 4, 3),
    ("drag", "handle on the centre, target 20 px right, drag_steps", 2, 2),
    ("style-diffusion", "filled -> outlined", 2, 2),
]


@pytest.fixture(scope="module")
def engine():
    from core.engine import Engine

    return Engine()


@pytest.mark.parametrize("method,check_words,seeds,need", METHOD_CHECKS,
                         ids=["pnp", "pix2pix-zero-colour", "pix2pix-zero-shape", "diffuseit", "drag",
                              "style-diffusion"])
def test_method_does_what_is_asked_on_a_rendered_scene(engine, method, check_words, seeds, need):
    from core.models import ModelSpec
    from tools.semantic_report import CHECKS, run_check

    check = next(c for c in CHECKS if c.method == method and c.what.startswith(check_words))
    row = run_check(engine, ModelSpec("demo", device="cpu"), check, list(range(seeds)))
    assert round(row["success_rate"] * seeds) >= need, row
