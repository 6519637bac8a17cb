"""The instant drag (quick-drag) end to end: pass counts cold and warm, no gradients, the source's
keys/values recorded once and replayed, the warp's preview before any denoising pass, outside-mask
pixels exact, bad points, cancel, the CLI, and a moved shape on the demo model against a control."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine import EditRequest
from core.errors import Cancelled, InvalidInput
from core.events import CancelToken
from core.schedule import DDIMSchedule
from core.unet_calls import counters

STEPS = 8


def _image(w=48, h=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, np.full_like(xx, 128)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _denoise_steps(model, steps=STEPS, strength=0.7):
    return steps - DDIMSchedule(model.scheduler_config, steps).index_for_strength(strength)


PARAMS = dict(points=[[10, 12, 26, 14], [40, 25, 36, 20]], prompt="a test", steps=STEPS)


def test_cold_then_warm_pass_counts_and_no_backward_pass(engine_with_tiny, tiny_model):
    n = _denoise_steps(tiny_model)
    img = _image()
    events = []
    first = engine_with_tiny.run(EditRequest("quick-drag", img, PARAMS), events=events.append)
    assert first.image.size == (48, 32)
    assert first.passes["unet"] == 2 * n and first.passes["unet_b2"] == n  # inversion + [edit, source]
    assert "unet_grad" not in first.passes
    assert first.info["source_attention"] == "recorded"
    assert [e.stage for e in events if e.step == 0] == ["load", "invert", "warp", "denoise"]
    for stage in ("invert", "warp", "denoise"):
        assert all(e.preview is not None for e in events if e.stage == stage and e.step > 0), stage
    handles = first.info["handles"]
    assert len(handles) == 2 and all(0 <= x < 48 and 0 <= y < 32 for x, y in handles)

    second = engine_with_tiny.run(EditRequest("quick-drag", img, PARAMS))
    assert second.passes["unet"] == n and second.passes["unet_b1"] == n and "unet_b2" not in second.passes
    assert second.info["source_attention"] == "reused"
    # replaying the recorded keys/values gives the picture recording them gave
    diff = np.abs(np.asarray(second.image, np.int16) - np.asarray(first.image, np.int16))
    assert diff.max() <= 2

    moved = engine_with_tiny.run(EditRequest("quick-drag", img, {**PARAMS, "points": [[10, 12, 20, 20]]}))
    assert moved.passes["unet"] == n  # a new target reuses the inversion and the source's keys/values


def test_the_warp_preview_comes_before_any_denoising_pass(engine_with_tiny, tiny_model):
    img = _image(seed=1)
    engine_with_tiny.run(EditRequest("quick-drag", img, PARAMS))  # warm the caches
    seen = []
    start = dict(counters(tiny_model))

    def sink(ev):
        if ev.preview is not None:
            seen.append((ev.stage, counters(tiny_model)["unet"] - start.get("unet", 0)))

    engine_with_tiny.run(EditRequest("quick-drag", img, {**PARAMS, "points": [[12, 12, 30, 14]]}), events=sink)
    warp = [passes for stage, passes in seen if stage == "warp"]
    assert warp == [0]  # the edit's first look costs no UNet pass once the inversion is cached


def test_pixels_outside_the_mask_are_the_inputs(engine_with_tiny):
    img = _image(seed=2)
    mask = np.zeros((32, 48), np.float32)
    mask[4:28, 4:36] = 1.0
    res = engine_with_tiny.run(EditRequest("quick-drag", img, {**PARAMS, "points": [[10, 12, 26, 14]]},
                                           mask=mask))
    out = np.asarray(res.image.convert("RGB"))
    far = np.ones_like(mask, bool)
    far[1:31, 1:39] = False  # past the composite's feather
    assert np.array_equal(out[far], img[far])
    assert not np.array_equal(out[10:20, 10:30], img[10:20, 10:30])


def test_without_source_attention_it_is_one_batch_one_pass_a_step(engine_with_tiny, tiny_model):
    n = _denoise_steps(tiny_model)
    res = engine_with_tiny.run(EditRequest("quick-drag", _image(seed=3), {**PARAMS, "source_attention": False}))
    assert res.passes["unet"] == 2 * n and "unet_b2" not in res.passes and res.info["source_attention"] == "off"


def test_cancel_keeps_only_complete_steps_of_the_source_keys(engine_with_tiny, tiny_model):
    n = _denoise_steps(tiny_model)
    img = _image(seed=4)
    token = CancelToken()
    done = []

    def sink(ev):
        if ev.stage == "denoise" and ev.step > 0:
            done.append(ev.step)
            if len(done) == 2:
                token.cancel()

    with pytest.raises(Cancelled):
        engine_with_tiny.run(EditRequest("quick-drag", img, PARAMS), events=sink, cancel=token)
    res = engine_with_tiny.run(EditRequest("quick-drag", img, PARAMS))
    assert res.passes["unet_b2"] == n - 2 and res.passes["unet_b1"] == 2  # two steps were kept
    assert res.info["source_attention"] == "completed"


def test_bad_points_are_invalid_input_before_any_pass(engine_with_tiny, tiny_model):
    img = _image(40, 24)
    passes = dict(counters(tiny_model))
    for points, message in (((), "required"), ([[5, 5, 5, 5]], "equals its target"),
                            ([[-1, 5, 9, 9]], "outside"), ([[5, 5, 40, 9]], "outside the 40x24")):
        with pytest.raises(InvalidInput, match=message) as err:
            engine_with_tiny.run(EditRequest("quick-drag", img, dict(points=points, steps=STEPS)))
        assert "\n" not in str(err.value)
    assert dict(counters(tiny_model)) == passes


def test_cli_quick_drag_with_points_and_passes_in_json(tmp_path, capsys):
    from editor_app.cli import main
    from tests.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny-model")
    src = tmp_path / "in.png"
    Image.fromarray(_image(50, 30)).save(src)
    out = tmp_path / "out.png"
    code = main(["quick-drag", str(src), "-o", str(out), "--model", str(model), "--point", "20,15,30,15",
                 "--point", "40,10,40,20", "--steps", "6", "--json", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    info = json.loads(stdout)
    assert len(info["handles"]) == 2 and info["passes"]["unet"] > 0 and "unet_grad" not in info["passes"]
    assert Image.open(out).size == (50, 30)
    code = main(["quick-drag", str(src), "-o", str(tmp_path / "bad.png"), "--model", str(model),
                 "--point", "20,15,20,15", "--quiet"])
    assert code == 2 and not (tmp_path / "bad.png").exists()


# ---- on the demo model: a shape moves, the rest stays ----------------------------------------------

def test_a_dragged_shape_lands_on_its_target_on_the_demo_model():
    """Two ShapesWorld drags (the drag_reach benchmark's samples): the shape's centroid covers most of
    the way, and the same reading of a plain reconstruction (a method that moves nothing) does not."""
    from core.engine import Engine
    from core.models import ModelSpec
    from tools.drag_reach import make_sample, score

    engine = Engine()
    for k in (1, 2):
        s = make_sample(k, 64, 0)
        spec = ModelSpec("demo", device="cpu")
        params = dict(points=[list(p) for p in s.points], prompt=s.prompt)
        res = engine.run(EditRequest("quick-drag", s.image, params, mask=s.mask, model=spec))
        got = score(np.asarray(res.image.convert("RGB")), s)
        control = engine.run(EditRequest("reconstruct", s.image, dict(prompt=s.prompt, steps=20), mask=s.mask,
                                         model=spec))
        still = score(np.asarray(control.image.convert("RGB")), s)
        assert got["reach"] >= 0.6 and still["reach"] < 0.3, (k, got, still)
        assert res.passes["unet"] <= 60 and "unet_grad" not in res.passes
