"""Semantic checks on the trained demo model, each with a control that must fail.

Every edit case carries its control: the same model drawing the target prompt from noise with the
same seed (tests/semantic_scenes.py) must *fail* the layout check the edit has to pass, so a pass
means the method kept the picture's structure, not that the model can draw the caption. The scenes
sit off the five places the demo was trained on, on pictures that are not square, with full
captions, short prompts and the default empty source prompt; the unedited input is the second
control (it must fail the attribute check, or for drag the position check). Methods run at their
defaults except StyleDiffusion's `steps` (20 of 30, to keep this file near a minute on a CPU; its τ
fractions scale with it); malleable-eval measures at full length. Where a default still misses the
layout target, KNOWN_GAPS says so with the numbers, and the test fails once the gap closes."""
from __future__ import annotations

import random

import numpy as np
import pytest

from tests.semantic_scenes import (drawn_from_text, fill_ratio, iou, layout_kept, read, rest_change, scene,
                                   shift)
from tools.eval_demo import analyse, generate
from tools.semantic_report import RED_CIRCLE
from tools.semantic_report import read as read_scene
from tools.semantic_report import shift as scene_shift
from tools.shapesworld import sample_scene, two_tone_backdrop

ASKED = [dict(shape="circle", colour="red", position="on the left", background="white"),
         dict(shape="square", colour="blue", position="on the right", background="yellow"),
         dict(shape="circle", colour="green", position="at the top", background="black"),
         dict(shape="square", colour="yellow", position="at the bottom", background="blue")]


@pytest.fixture(scope="module")
def engine():
    from core.engine import Engine

    return Engine()


@pytest.fixture(scope="module")
def demo(engine):
    from core.models import ModelSpec

    return engine.load_model(ModelSpec("demo", device="cpu"))


def edit(engine, method: str, rgb: np.ndarray, params: dict, mask=None) -> tuple[np.ndarray, dict]:
    from core.engine import EditRequest
    from core.models import ModelSpec

    res = engine.run(EditRequest(method, rgb, params, mask=mask, model=ModelSpec("demo", device="cpu")))
    return np.asarray(res.image.convert("RGB")), dict(res.info)


def test_demo_draws_the_colour_and_place_it_is_asked(demo):
    scenes = [sample_scene(random.Random(k), 64, n_shapes=1, fill="filled", size="large", two_tone=False, **a)
              for k, a in enumerate(ASKED)]
    images = generate(demo, [s.caption for s in scenes], steps=20, guidance=5.0, seed=0)
    rows = [analyse(img, s) for img, s in zip(images, scenes)]
    assert sum(r["colour_ok"] for r in rows) >= 3, rows
    assert sum(r["position_ok"] for r in rows) >= 3, rows
    assert sum(r["shape_ok"] for r in rows) >= 3, rows
    # a random model draws noise: the caption's background must dominate the picture. The caption
    # does not say whether the background is plain or two-tone (the training world has both), so
    # the picture is read against either.
    for img, s in zip(images, scenes):
        backdrops = [two_tone_backdrop(s.background, 64, 64, tone) for tone in (False, True)]
        assert min(read_scene(img, s, bg).fg.mean() for bg in backdrops) < 0.5


def test_reconstruct_keeps_a_rendered_red_circle_in_place(engine):
    sc = sample_scene(random.Random(0), 64, n_shapes=1, **RED_CIRCLE)
    rgb = np.asarray(sc.image)
    out, _ = edit(engine, "reconstruct", rgb, {"prompt": sc.caption, "steps": 20})
    before, after = read_scene(rgb, sc), read_scene(out, sc)
    assert after.colour == "red" and after.shape == "circle"
    assert scene_shift(before, after) <= 3


# ---- text-guided edits --------------------------------------------------------------------------
# A red circle between the trained places (nearest: the centre), on a 64x48 picture.
WIDE = dict(w=64, h=48, cx=0.40, cy=0.56, size="large")
# A red square above and right of the centre, on a 48x64 picture.
TALL = dict(w=48, h=64, cx=0.58, cy=0.40, shape="square", size="large")

# Where a method at its defaults still misses the layout target (centroid within 3 px, silhouette
# IoU >= 0.7) on these scenes, measured on the demo model with seed 0, and whether it at least keeps
# more of the layout than the text-to-image control. The test fails as soon as a gap closes, so that
# the entry is removed.
KNOWN_GAPS = {  # case: (why, beats the control)
    "pix2pix-zero-full": ("the square grows (IoU ~0.4) and drifts ~3 px toward the trained place the caption "
                          "names", True),
    "pix2pix-zero-short": ("with a short caption the square drifts ~3 px and loses part of its outline "
                           "(IoU ~0.5)", True),
}


def layout(rgb_in: np.ndarray, rgb_out: np.ndarray, sc) -> tuple[float, float]:
    """(centroid shift px, silhouette IoU) of the output's shape against the input's."""
    return shift(read(rgb_in, sc), read(rgb_out, sc)), iou(read(rgb_out, sc).fg, sc.mask)


def check_layout(case: str, sc, out: np.ndarray, control: np.ndarray, silhouette: bool = True):
    """The method keeps the layout better than the text-to-image control, which must fail the
    layout check (else the check cannot tell), and meets the target unless a known gap says not."""
    (s_out, i_out), (s_ctl, i_ctl) = layout(sc.rgb, out, sc), layout(sc.rgb, control, sc)
    assert not layout_kept(sc.rgb, control, sc, silhouette), ("the control keeps the layout: the check "
                                                              f"cannot tell ({s_ctl:.1f} px, IoU {i_ctl:.2f})")
    why, beats_control = KNOWN_GAPS.get(case, ("", True))
    if beats_control:
        assert s_out < s_ctl and (not silhouette or i_out > i_ctl), (s_out, i_out, s_ctl, i_ctl)
    kept = layout_kept(sc.rgb, out, sc, silhouette)
    if why:
        assert not kept, f"{case} now keeps the layout ({s_out:.1f} px, IoU {i_out:.2f}): remove it from KNOWN_GAPS"
        pytest.xfail(f"{why} ({s_out:.1f} px, IoU {i_out:.2f}; control {s_ctl:.1f} px, {i_ctl:.2f})")
    assert kept, (s_out, i_out)


PNP_CASES = {  # case: (target prompt, source prompt) from the scene
    "pnp-empty-source": lambda sc: (sc.caption(colour="blue"), ""),       # the default empty source prompt
    "pnp-full-source": lambda sc: (sc.caption(colour="blue"), sc.caption()),
    "pnp-short": lambda sc: (sc.short(colour="blue"), ""),
}


@pytest.mark.parametrize("case", list(PNP_CASES))
def test_pnp_changes_the_colour_and_keeps_the_layout_and_background(engine, demo, case):
    sc = scene(**WIDE)
    prompt, source = PNP_CASES[case](sc)
    out, _ = edit(engine, "pnp", sc.rgb, {"prompt": prompt, "source_prompt": source})
    control = drawn_from_text(demo, prompt, sc.size, 0, guidance=7.5)   # PnP's default guidance
    assert read(out, sc).colour == "blue" and read(sc.rgb, sc).colour == "red"
    if case not in KNOWN_GAPS:  # the background within a few levels of the input (the control repaints it)
        assert rest_change(sc.rgb, out, sc.mask) < 6 <= rest_change(sc.rgb, control, sc.mask)
    check_layout(case, sc, out, control)


@pytest.mark.parametrize("case", ["pix2pix-zero-full", "pix2pix-zero-short"])
def test_pix2pix_zero_turns_red_blue_in_place(engine, demo, case):
    sc = scene(**TALL)
    source = sc.caption() if case.endswith("full") else sc.short()
    out, _ = edit(engine, "pix2pix-zero", sc.rgb, {"source_word": "red", "target_word": "blue",
                                                   "source_prompt": source})
    assert read(out, sc).colour == "blue" and read(sc.rgb, sc).colour == "red"
    control = drawn_from_text(demo, source.replace("red", "blue"), sc.size, 0, guidance=5.0)  # its default
    check_layout(case, sc, out, control)


def test_style_diffusion_outlines_the_shape_in_place(engine, demo):
    # 20 steps instead of the default 30 keeps this file near a minute (the τ fractions scale with it)
    sc = scene(**WIDE)
    out, _ = edit(engine, "style-diffusion", sc.rgb, {"source_prompt": sc.caption(),
                                                      "prompt": sc.caption(fill="outlined"), "steps": 20})
    assert fill_ratio(out, sc) < 0.5 <= fill_ratio(sc.rgb, sc)   # the identity control stays filled
    assert read(out, sc).colour == "red"
    control = drawn_from_text(demo, sc.caption(fill="outlined"), sc.size, 0, guidance=7.5)
    check_layout("style-diffusion", sc, out, control, silhouette=False)


# ---- drag -------------------------------------------------------------------------------------------

def test_drag_moves_the_shape_most_of_the_way_and_reports_how_far(engine, demo):
    # from beside the top place to the top right, a quarter of the picture's width: a place the demo
    # never draws on its own (the nearest trained places, top and right, are 12 px from it)
    start, dx = dict(w=64, h=48, cy=0.25, size="medium"), 0.25 * 64
    sc, moved = scene(cx=0.45, **start), scene(cx=0.45 + dx / 64, **start)
    (hx, hy) = read(sc.rgb, sc).centroid
    from tools.eval_demo import grow

    mask = grow(sc.mask | moved.mask, 4).astype(np.float32)
    # the default empty prompt, as most drags are made (a caption naming "at the top" holds the shape
    # near that trained place: reach 0.48 there, a gap of the demo's prompt-bound layouts)
    out, info = edit(engine, "drag", sc.rgb, {"points": [[hx, hy, hx + dx, hy]]}, mask=mask)
    after = read(out, sc)
    assert after.centroid[0] - hx >= 0.6 * dx and abs(after.centroid[1] - hy) <= 3
    assert rest_change(sc.rgb, out, sc.mask | moved.mask) < 6
    # the report: where the handle ended, in input pixels, and whether that counts as arrived
    point = info["points"][0]
    assert point["start_distance_px"] == pytest.approx(dx, abs=0.01)
    assert info["reached"] == (point["distance_px"] <= point["stop_radius_px"])
    # controls: the input itself, and the model drawing the (empty) prompt, do not put the shape there
    for control in (sc.rgb, drawn_from_text(demo, "", sc.size, 0, 7.5)):
        got = read(control, sc).centroid
        assert got is None or abs(got[0] - (hx + dx)) > 0.4 * dx


# ---- DiffuseIT --------------------------------------------------------------------------------------

def test_diffuseit_takes_the_style_images_colours_and_keeps_the_shape(engine, demo, tmp_path):
    from PIL import Image

    from tools.eval_demo import foreground
    from tools.shapesworld import dominant_colour

    def silhouette(rgb):
        return foreground(rgb, np.median(rgb[~sc.mask], 0)[None, None, :])

    sc = scene(**WIDE)
    style = scene(64, 48, 0.75, 0.3, shape="triangle", colour="green", background="blue", size="small")
    path = tmp_path / "style.png"
    Image.fromarray(style.rgb).save(path)
    out, _ = edit(engine, "diffuseit", sc.rgb, {"style_image": str(path)})
    assert dominant_colour(out, ~sc.mask) == "blue" != dominant_colour(sc.rgb, ~sc.mask)
    drawn = drawn_from_text(demo, f"a large red circle {sc.spec.position}, on a blue background", sc.size, 0, 5.0)
    got, ctl = iou(silhouette(out), sc.mask), iou(silhouette(drawn), sc.mask)
    print(f"diffuseit IoU {got:.2f}, control {ctl:.2f}")
    assert ctl < 0.7 <= got, (got, ctl)
