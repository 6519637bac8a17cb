"""DiffuseIT: losses, guidance and the method end to end on tiny in-process models (tiny SD, tiny
random DINO ViT and CLIP saved to temporary folders and passed as the method's encoder sources, so
load_aux never asks a hub)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.aux_models import load_aux
from core.methods.diffuseit.losses import (ClipEncoder, DinoEncoder, patch_nce_loss, self_similarity_loss)
from core.engine import EditRequest
from core.errors import InvalidInput, ModelUnavailable
from core.methods.diffuseit.method import DiffuseITParams, Objective, checkpointed_decoder
from core.unet_calls import vae_decode
from tests.tiny import write_char_tokenizer

W, H = 32, 24  # the tiny model's native size is 32: the picture is the working canvas, no resizing
FAST = dict(steps=6, skip=0.5, resample=1, cutouts=2, range_restarts=0)  # the random tiny model overflows: no restarts


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("diffuseit_aux")
    torch.manual_seed(1)
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=64), add_pooling_layer=False)
    vit.save_pretrained(root / "dino")
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
                         pad_token_id=513),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16))
    clip.save_pretrained(root / "clip")
    CLIPTokenizer.from_pretrained(write_char_tokenizer(root / "tok")).save_pretrained(root / "clip")
    return dict(dino_model=str(root / "dino"), clip_model=str(root / "clip"))


def picture(w=W, h=H, seed=0) -> np.ndarray:
    """Structure a ViT can see: a gradient, a bright square and a dark bar."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.float32)
    img[4:12, 5:14] = (240, 220, 30)
    img[16:20, 18:30] = (20, 30, 160)
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def to_pix(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def encoders_for(model, enc):
    dino = DinoEncoder(load_aux("dino", model, source=enc["dino_model"]))
    clip = ClipEncoder(load_aux("clip", model, source=enc["clip_model"]))
    return dino, clip


def shuffle_patches(pix: torch.Tensor, patch: int, seed: int = 0) -> torch.Tensor:
    b, c, h, w = pix.shape
    tiles = pix.unfold(2, patch, patch).unfold(3, patch, patch)  # b c nh nw p p
    nh, nw = tiles.shape[2], tiles.shape[3]
    flat = tiles.reshape(b, c, nh * nw, patch, patch)
    perm = torch.randperm(nh * nw, generator=torch.Generator().manual_seed(seed))
    flat = flat[:, :, perm].reshape(b, c, nh, nw, patch, patch)
    return flat.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


# ---- losses ----------------------------------------------------------------------------------------

def test_self_similarity_zero_for_identical_and_grows_with_shuffle(tiny_model, encoders):
    dino, _ = encoders_for(tiny_model, encoders)
    pix = to_pix(picture(32, 32))
    with torch.no_grad():
        keys, _ = dino(pix)
        keys_again, _ = dino(pix.clone())
        keys_shuf, _ = dino(shuffle_patches(pix, 8))
        keys_brighter, _ = dino((pix + 0.05).clamp(-1, 1))
    assert keys.shape == (1, 16, 32)  # 4x4 patches of 8 px, heads concatenated
    assert self_similarity_loss(keys, keys_again).item() == pytest.approx(0.0, abs=1e-10)
    shuffled = self_similarity_loss(keys, keys_shuf).item()
    assert shuffled > 1e-3
    assert shuffled > 3 * self_similarity_loss(keys, keys_brighter).item()  # structure, not appearance


def test_contrastive_loss_prefers_aligned_keys():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(1, 64, 32, generator=g)
    near = src + 0.3 * torch.randn(src.shape, generator=g)
    perm = torch.randperm(64, generator=g)
    aligned = patch_nce_loss(src, near).item()
    shuffled = patch_nce_loss(src, near[:, perm]).item()
    assert aligned < 0.5 * shuffled
    assert aligned < np.log(64)  # better than chance


def test_checkpointed_decoder_gives_the_same_gradient(tiny_model):
    lat = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))

    def grad(enable):
        x = lat.clone().requires_grad_(True)
        with checkpointed_decoder(tiny_model, enable=enable):
            vae_decode(tiny_model, x, clamp=False).pow(2).mean().backward()
        return x.grad

    plain, ckpt = grad(False), grad(True)
    assert torch.allclose(plain, ckpt, atol=1e-6)
    assert tiny_model.vae.decoder.gradient_checkpointing is False  # restored


# ---- method ----------------------------------------------------------------------------------------

def test_parameters_need_exactly_one_guide(engine_with_tiny):
    with pytest.raises(InvalidInput, match="not both"):
        DiffuseITParams.from_dict(dict(prompt="a painting", style_image="/tmp/x.png"))
    with pytest.raises(InvalidInput, match="exactly one"):
        DiffuseITParams.from_dict(dict(prompt="  "))
    with pytest.raises(InvalidInput):
        engine_with_tiny.run(EditRequest("diffuseit", picture(), {}))
    assert DiffuseITParams.from_dict(dict(prompt="a painting")).guidance_scale == 1.0


def test_missing_dino_is_model_unavailable(engine_with_tiny, encoders, monkeypatch):
    import core.aux_models as aux

    def offline(repo_id):
        raise ModelUnavailable("not in the local cache and offline")

    monkeypatch.setattr(aux, "download_from_hub_generic", offline)
    with pytest.raises(ModelUnavailable, match="DINO"):
        engine_with_tiny.run(EditRequest("diffuseit", picture(), dict(prompt="a painting",
                                                                      clip_model=encoders["clip_model"])))


def test_text_guidance_end_to_end(engine_with_tiny, tiny_model, encoders):
    from core.unet_calls import counters

    events = []
    params = dict(prompt="a watercolor painting", source_prompt="a photo", **FAST, **encoders)
    res = engine_with_tiny.run(EditRequest("diffuseit", picture(), params), events=events.append)
    assert res.image.size == (W, H)
    kept = 3  # steps 6, skip 0.5
    assert res.passes["unet"] == kept + 1 and res.passes["unet_grad"] == kept + 1  # every step guided
    assert res.passes["vae_decode"] == kept + 1 + 1  # x̂0 each step + the result
    assert [s for s in res.stages if s in ("resample", "guide")] == ["resample", "guide"]
    guide_previews = [e for e in events if e.stage == "guide" and e.preview is not None]
    assert len(guide_previews) == kept
    assert {"clip", "ssim", "contrast", "range"} <= set(res.info["losses"])
    assert res.info["guided_steps"] == kept + 1

    # Source features are cached per image: a second edit computes none of them again.
    cache = engine_with_tiny.cache("diffuseit_features", 16)
    hits = cache.hits
    engine_with_tiny.run(EditRequest("diffuseit", picture(), {**params, "seed": 3}))
    assert cache.hits >= hits + 4  # DINO keys/CLS, CLIP source image, target and source texts
    assert counters(tiny_model)["unet"] > 0


def test_image_guidance_end_to_end_with_mask(engine_with_tiny, encoders, tmp_path):
    style = tmp_path / "style.png"
    Image.fromarray(picture(48, 40, seed=5)[:, ::-1].copy()).save(style)
    mask = np.zeros((H, W), np.float32)
    mask[:, :14] = 1.0
    src = picture()
    res = engine_with_tiny.run(EditRequest("diffuseit", src, dict(style_image=str(style), **FAST, **encoders),
                                           mask=mask))
    out = np.asarray(res.image)
    assert out.shape == src.shape
    assert np.array_equal(out[:, 20:], src[:, 20:])  # outside the mask (past the feather): the input's pixels
    assert not np.array_equal(out[:, :10], src[:, :10])
    assert {"style", "mse", "ssim", "contrast"} <= set(res.info["losses"])
    assert "clip" not in res.info["losses"]

    with pytest.raises(InvalidInput, match="Style image not found"):
        engine_with_tiny.run(EditRequest("diffuseit", src, dict(style_image=str(tmp_path / "nope.png"), **FAST,
                                                                **encoders)))


def test_mkl_colour_transfer_moves_mean_and_covariance_onto_the_style():
    from core.methods.diffuseit.colour_match import mkl_transfer

    g = torch.Generator().manual_seed(0)
    pix = torch.rand(1, 3, 20, 24, generator=g) * 0.5 - 0.4
    mix = torch.tensor([[0.9, 0.3, 0.0], [0.1, 0.5, 0.2], [0.0, 0.2, 0.7]])
    style = (torch.einsum("ij,bjhw->bihw", mix, torch.rand(1, 3, 30, 10, generator=g)) * 0.6).clamp(-1, 1)
    out = mkl_transfer(pix, style)

    def stats(x):
        flat = x[0].double().reshape(3, -1)
        return flat.mean(1), torch.cov(flat)

    (mo, co), (ms, cs) = stats(out), stats(style)
    torch.testing.assert_close(mo, ms, atol=1e-6, rtol=0)
    torch.testing.assert_close(co, cs, atol=1e-6, rtol=1e-5)
    # structure kept: the map is linear, so pixel order along any colour axis is preserved on average
    a, b = pix[0, 0].flatten(), out[0].mean(0).flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1].abs() > 0.3
    # a style identical to the picture maps it onto itself
    torch.testing.assert_close(mkl_transfer(pix, pix), pix, atol=1e-5, rtol=0)


def test_image_guided_result_is_colour_matched_unless_turned_off(engine_with_tiny, encoders, tmp_path):
    style_rgb = np.zeros((H, W, 3), np.uint8)
    style_rgb[..., 2] = 200  # a blue style image
    style_rgb[::2, :, 0] = 60
    style = tmp_path / "blue.png"
    Image.fromarray(style_rgb).save(style)
    src = picture()
    params = dict(style_image=str(style), **FAST, **encoders)
    matched = engine_with_tiny.run(EditRequest("diffuseit", src, params))
    plain = engine_with_tiny.run(EditRequest("diffuseit", src, {**params, "color_match": False}))
    assert matched.info["color_matched"] and not plain.info["color_matched"]
    m, p = (np.asarray(r.image, np.float64).reshape(-1, 3).mean(0) for r in (matched, plain))
    target = style_rgb.reshape(-1, 3).mean(0)
    assert np.abs(m - target).sum() < 0.5 * np.abs(p - target).sum()
    assert np.abs(m - target).max() < 12


def test_style_image_given_as_pixels_needs_no_file(engine_with_tiny, encoders, tmp_path):
    """A layer used as the style image travels in the request as pixels: same result as the file."""
    style_rgb = picture(48, 40, seed=5)[:, ::-1].copy()
    style = tmp_path / "style.png"
    Image.fromarray(style_rgb).save(style)
    src = picture()
    from_file = engine_with_tiny.run(EditRequest("diffuseit", src, dict(style_image=str(style), **FAST, **encoders)))
    from_pixels = engine_with_tiny.run(EditRequest("diffuseit", src, dict(style_image="Layer: Style", **FAST,
                                                                          **encoders),
                                                   inputs={"style_image": style_rgb}))
    assert np.array_equal(np.asarray(from_file.image), np.asarray(from_pixels.image))


@pytest.mark.parametrize("guide", ["text", "image"])
def test_guidance_lowers_total_loss(engine_with_tiny, tiny_model, encoders, tmp_path, guide):
    """Guided and unguided sampling from the same noise: the guided result has the lower l_total."""
    style = tmp_path / "style.png"
    Image.fromarray(picture(W, H, seed=9)[::-1].copy()).save(style)
    spec = dict(prompt="a watercolor painting") if guide == "text" else dict(style_image=str(style))
    base = dict(**spec, steps=8, skip=0.5, resample=2, cutouts=4, **encoders)
    src = picture()

    def result(scale):
        res = engine_with_tiny.run(EditRequest("diffuseit", src, dict(base, guidance_scale=scale)))
        return to_pix(np.asarray(res.image))

    unguided, guided = result(0.0), result(1.0)
    p = DiffuseITParams.from_dict(base)
    dino, clip = encoders_for(tiny_model, encoders)
    style_pix = to_pix(np.asarray(Image.open(style).convert("RGB"))) if guide == "image" else None
    objective = Objective.build(p, dino, clip, to_pix(src), style_pix)

    def total(pix):
        with torch.no_grad():
            return float(np.mean([objective.total(objective.terms(pix, seed)[0]).item() for seed in range(4)]))

    assert not torch.equal(unguided, guided)
    assert total(guided) < 0.9 * total(unguided)


def test_semantic_divergence_rewards_moving_away(tiny_model, encoders):
    """The [CLS] distance to the previous step's x̂0 enters l_total with a negative weight."""
    dino, clip = encoders_for(tiny_model, encoders)
    p = DiffuseITParams.from_dict(dict(prompt="a painting", cutouts=2))
    src = to_pix(picture())
    objective = Objective.build(p, dino, clip, src)
    with torch.no_grad():
        terms, cls = objective.terms(src, 0)
        far = cls + 1.0
        with_sem, _ = objective.terms(src, 0, prev_cls=far)
    assert "sem" not in terms and with_sem["sem"].item() == pytest.approx(1.0, rel=1e-5)
    assert objective.total(with_sem).item() == pytest.approx(objective.total(terms).item() - p.w_sem, rel=1e-5)


def test_semantic_divergence_acts_above_half_the_schedule_as_the_official(tiny_model):
    # The official: while the respaced index exceeds diff_iter, 50 of 100 (text command) and 100 of
    # 200 (image command) steps, i.e. above t = T/2; not a share of the kept steps.
    from core.methods.diffuseit.method import semantic_divergence_at
    from core.schedule import DDIMSchedule

    for steps in (100, 200):
        schedule = DDIMSchedule(tiny_model.scheduler_config, steps)
        top = len(schedule.alphas_cumprod)
        on = [t for t in schedule.timesteps if semantic_divergence_at(schedule, t)]
        assert on and min(on) > top / 2
        assert all(semantic_divergence_at(schedule, t) == (t > top / 2) for t in schedule.timesteps)
        # at the default skip (the first 40 % skipped) it acts on about a sixth of the kept steps
        kept = [t for t in schedule.timesteps[int(0.4 * steps):]]
        assert 0.1 < sum(semantic_divergence_at(schedule, t) for t in kept) / len(kept) < 0.25


def test_content_is_regularised_once_the_text_matches_as_the_official_text_command(tiny_model, encoders):
    # --regularize_content: the contrastive loss counts double while the previous step's CLIP
    # cosine to the target is above 0.5; the first step's "previous" is the source image's.
    from core.methods.diffuseit.method import CONTENT_REGULARISE_COS

    dino, clip = encoders_for(tiny_model, encoders)
    p = DiffuseITParams.from_dict(dict(prompt="a painting", cutouts=2))
    objective = Objective.build(p, dino, clip, to_pix(picture()))
    cos0 = objective.feats.source_clip_cos
    assert cos0 is not None and -1.0 <= cos0 <= 1.0
    objective.clip_cos_prev = CONTENT_REGULARISE_COS - 0.1
    assert objective.weights["contrast"] == p.w_contrast
    objective.observe({"clip": torch.tensor(1.0 - (CONTENT_REGULARISE_COS + 0.1))})  # this step matched well
    assert objective.weights["contrast"] == 2 * p.w_contrast and objective.weights["ssim"] == p.w_ssim
    objective.observe({"clip": torch.tensor(0.9)})
    assert objective.weights["contrast"] == p.w_contrast and objective.regularised_steps == 1
    # image guidance has no CLIP target: never regularised this way
    style = Objective.build(DiffuseITParams.from_dict(dict(style_image="x.png")), dino, None, to_pix(picture()),
                            style_pix=to_pix(picture(seed=1)))
    style.clip_cos_prev = 0.9
    assert style.weights["contrast"] == p.w_contrast


def test_normalisation_read_from_the_model_folder(tmp_path):
    import json

    from core.aux_models import AuxModel
    from core.vision import IMAGENET_MEAN, IMAGENET_STD, normalisation

    aux = AuxModel("dino", str(tmp_path), torch.nn.Identity())
    assert normalisation(aux.processor, IMAGENET_MEAN, IMAGENET_STD, aux.source) == (IMAGENET_MEAN, IMAGENET_STD)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(dict(image_mean=[0.5] * 3, image_std=[0.25] * 3)))
    assert normalisation(aux.processor, IMAGENET_MEAN, IMAGENET_STD, aux.source) == ((0.5,) * 3, (0.25,) * 3)


def test_a_run_whose_image_leaves_the_colour_range_starts_again_as_the_official_range_restart(
        engine_with_tiny, encoders, monkeypatch):
    # --use_range_restart: past the first kept step, w_range x range loss above 0.01 restarts the
    # whole run from fresh noise; bounded here by range_restarts, after which the run goes on.
    import core.methods.diffuseit.method as m

    monkeypatch.setattr(m, "range_loss", lambda pix: pix.sum() * 0 + 1.0)  # every x̂0 out of range
    params = dict(prompt="a watercolor painting", **FAST, **encoders)  # kept 3 steps, 1 resample

    def run(**kw):
        return engine_with_tiny.run(EditRequest("diffuseit", picture(), {**params, **kw}))

    twice = run(range_restarts=2)
    # each restarted attempt: 1 resample + 2 guide steps (the check starts after the first kept
    # step); the last attempt runs whole: 1 + 3
    assert twice.info["range_restarts"] == 2 and twice.passes["unet"] == 2 * 3 + 4
    never = run(range_restarts=0)
    assert never.info["range_restarts"] == 0 and never.passes["unet"] == 4
    assert not np.array_equal(np.asarray(twice.image), np.asarray(never.image))  # fresh noise
    assert np.array_equal(np.asarray(run(range_restarts=2).image), np.asarray(twice.image))  # seeded
    unweighted = run(range_restarts=2, w_range=0.0)  # no range weight: never out of range, as the official
    assert unweighted.info["range_restarts"] == 0
