"""Prompt-to-Prompt local blending (core/local_blend.py) and StyleDiffusion's use of it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.attention import LayerInfo
from core.errors import InvalidInput
from core.local_blend import (LocalBlend, blend_factor, changed_positions, cross_attention_factors, swapped_positions,
                              token_positions)
from core.methods.style_diffusion import method as sd

from .test_style_diffusion import GUIDANCE, STEPS, trained  # noqa: F401  (the shared fixture)


def test_blend_factor_reads_the_official_quarter_on_sd_and_a_finer_level_on_small_latents():
    sd_factors = [1, 2, 4]                         # SD 1.x: cross-attention at /1, /2, /4
    assert blend_factor((64, 64), sd_factors) == 4  # 512 px: the official 16×16 maps
    assert blend_factor((96, 64), sd_factors) == 4  # 768×512: 24×16
    assert blend_factor((32, 32), sd_factors) == 4  # 256 px: 8×8 still fits
    assert blend_factor((16, 16), [1, 2]) == 2      # the demo's 64 px: 8×8, not 4×4
    assert blend_factor((16, 12), [1, 2]) == 2      # non-square: the long side counts
    assert blend_factor((8, 8), [1, 2]) == 1        # nothing coarser fits: full resolution


def test_cross_attention_factors_follow_the_down_blocks(tiny_model):
    assert cross_attention_factors(tiny_model.unet) == [1, 2]  # CrossAttn, CrossAttn, Down


def test_token_positions_and_swapped_positions():
    assert token_positions([0, 5, 6, 7, 5, 6, 9], [5, 6]) == [1, 2, 4, 5]
    assert token_positions([0, 5, 9], []) == []
    assert swapped_positions([0, 4, 5, 9, 9], [0, 4, 8, 9, 9]) == [2]
    # any lengths (BOS 0, EOS 9, padding after): what each prompt has that the other lacks
    assert changed_positions([0, 4, 5, 6, 9, 9], [0, 4, 7, 8, 6, 9], eos=9) == ([2], [2, 3])
    assert changed_positions([0, 4, 6, 9], [0, 4, 6, 9, 9], eos=9) == ([], [])


def _cross_call(tokens: int):
    return SimpleNamespace(layer=LayerInfo("up_blocks.1.attentions.0.transformer_blocks.0.attn2", "up", 1, 0, "attn2"),
                           tokens=tokens)


def test_mask_is_measured_from_the_maps_floor_and_blending_resets_only_outside_it():
    # A word map with a floor of 30 % of its peak everywhere (a small text encoder's diffuse maps):
    # divided by the maximum only (the official), every cell passes 0.3 and nothing would be kept.
    blend = LocalBlend([3], [3], latent_hw=(16, 16), factor=2, steps=10)
    assert blend.grid == (8, 8) and blend.pool_radius == 0
    word_map = torch.full((8, 8), 0.3)
    word_map[2:4, 5:7] = 1.0
    p = torch.zeros(2, 2, 64, 77)                   # [batch, heads, tokens, text tokens]
    p[:, :, :, 3] = word_map.flatten()
    blend.rows = (0, 1)
    assert blend.applies(_cross_call(64)) and not blend.applies(_cross_call(256))
    blend.probs(_cross_call(64), p)
    mask = blend.mask()[0, 0]
    assert mask.shape == (16, 16)
    expected = torch.zeros(16, 16)
    expected[4:8, 10:14] = 1.0
    torch.testing.assert_close(mask, expected)

    x_target, x_source = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    assert torch.equal(blend.blend(x_target, x_source, step=1), x_target)  # before a fifth of the steps
    out = blend.blend(x_target, x_source, step=2)
    inside = expected.bool().expand(1, 4, 16, 16)
    assert torch.equal(out[inside], x_target[inside]) and torch.equal(out[~inside], x_source[~inside])
    assert blend.coverage() == pytest.approx(16 / 256)


def test_a_map_that_marks_no_place_is_left_out_of_the_union_unless_all_do():
    # The target's word spread over the picture (floor 70 % of its peak, noise on top): stretched
    # from floor to peak it would free about half the latent. The source's word marks one region.
    blend = LocalBlend([3], [4], latent_hw=(16, 16), factor=2, steps=10)
    placed = torch.full((8, 8), 0.2)
    placed[2:4, 5:7] = 1.0
    flat = 0.7 + 0.3 * torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    blend.add("source", placed.flatten()[:, None].expand(64, 77).clone() * (torch.arange(77) == 3))
    blend.add("target", flat.flatten()[:, None].expand(64, 77).clone() * (torch.arange(77) == 4))
    mask = blend.mask()[0, 0]
    expected = torch.zeros(16, 16)
    expected[4:8, 10:14] = 1.0
    torch.testing.assert_close(mask, expected)
    blend.blend(torch.zeros(1, 4, 16, 16), torch.ones(1, 4, 16, 16), step=5)
    assert blend.report()["flat_maps_left_out"] == ["target"]

    # Every word flat: the edit is global, the union of all of them stands.
    both = LocalBlend([3], [4], latent_hw=(16, 16), factor=2, steps=10)
    both.add("source", flat.flatten()[:, None].expand(64, 77).clone() * (torch.arange(77) == 3))
    both.add("target", flat.flatten()[:, None].expand(64, 77).clone() * (torch.arange(77) == 4))
    assert both.mask().mean() > 0.3 and both.last_flat == []


def test_blend_words_for_word_swaps_named_words_and_none_for_refinements(tiny_model):
    model = tiny_model

    def blend_for(**kw):
        p = sd.StyleDiffusionParams(**kw)
        return sd.local_blend_for(model, p, sd.align_tokens(model, p.source_prompt, p.prompt), (16, 16), 10)

    swap = blend_for(source_prompt="a photo", prompt="a phono")
    ids = model.tokenize(["a photo", "a phono"])
    assert swap.source_tokens == swap.target_tokens == swapped_positions(ids[0].tolist(), ids[1].tolist())
    assert len(swap.source_tokens) >= 1 and swap.factor == 2
    assert blend_for(source_prompt="a photo", prompt="a red photo") is None       # refinement: restyles
    assert blend_for(source_prompt="", prompt="a photo") is None                  # nothing to compare with
    assert blend_for(source_prompt="a photo", prompt="a phono", local_blend=False) is None
    named = blend_for(source_prompt="a photo", prompt="a red photo", blend_words="photo")
    assert named.source_tokens and named.target_tokens
    with pytest.raises(InvalidInput, match="blend words"):
        blend_for(source_prompt="a photo", prompt="a red photo", blend_words="zebra")


def test_a_blended_word_swap_keeps_the_inversion_outside_the_words_region(trained):  # noqa: F811
    # The deviation this catches: StyleDiffusion's official word-swap edits blend locally; without it
    # the whole latent is regenerated. Outside the final mask the target *is* the source's latent.
    model, schedule, traj, learned = trained["model"], trained["schedule"], trained["traj"], trained["learned"]
    c_src, c_tgt = model.encode_text("a photo"), model.encode_text("a phono")
    al = sd.align_tokens(model, "a photo", "a phono")
    p = sd.StyleDiffusionParams(prompt="a phono", source_prompt="a photo", steps=STEPS, guidance=GUIDANCE)
    blend = sd.local_blend_for(model, p, al, tuple(traj.clean.shape[-2:]), STEPS)
    blend.threshold = 0.5  # the tiny random model's maps are noise: keep a part of the latent for sure
    edited = sd.edit_latents(model, schedule, traj, learned, c_src, c_tgt, trained["uncond"], al, p, blend=blend)
    free = sd.edit_latents(model, schedule, traj, learned, c_src, c_tgt, trained["uncond"], al, p)
    keep = blend.last_mask.expand_as(edited) == 0
    assert 0 < int(keep.sum()) < keep.numel()
    torch.testing.assert_close(edited[keep], traj.clean.to(edited)[keep], rtol=0, atol=0)
    assert (free[keep] - traj.clean.to(free)[keep]).abs().max() > 1e-3  # without it, all changes


def test_pix2pix_zero_blends_the_captions_word_and_keeps_the_trajectory_outside(tiny_model):
    from core.methods.pix2pix_zero import directions as ed
    from core.methods.pix2pix_zero import method as pz
    from core.sampling import ddim_invert
    from core.schedule import DDIMSchedule

    model = tiny_model
    p = pz.Pix2PixZeroParams(source_word="cat", target_word="dog", source_prompt="a cat on a rug")
    blend = pz.word_blend(model, p, "a cat on a rug", (16, 16), 5)
    ids = model.tokenize(["a cat on a rug"])[0].tolist()
    assert [ids[j] for j in blend.source_tokens] == ed.word_token_ids(model.tokenizer, "cat")
    assert blend.target_tokens == blend.source_tokens           # the edit branch's same positions
    assert pz.word_blend(model, p, "a kitten on a rug", (16, 16), 5) is None  # word not in the caption
    off = pz.Pix2PixZeroParams(source_word="cat", target_word="dog", local_blend=False)
    assert pz.word_blend(model, off, "a cat on a rug", (16, 16), 5) is None

    schedule = DDIMSchedule(model.scheduler_config, 5)
    cond = model.encode_text("a cat on a rug")
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5)) * 0.8
    traj = ddim_invert(model, schedule, latent, cond)
    ref = pz.reference_pass(model, schedule, traj, cond)
    cond_edit = cond.float() + ed.edit_direction(model, "cat", "dog")
    blend.threshold = 0.5  # the tiny random model's maps are noise: keep a part of the latent for sure
    edited = pz.edit_pass(model, schedule, traj.noisiest, cond_edit, cond, ref, 5.0, 0.1, blend=blend, traj=traj)
    free = pz.edit_pass(model, schedule, traj.noisiest, cond_edit, cond, ref, 5.0, 0.1)
    assert set(blend.sums) == {"source", "target"}
    keep = blend.last_mask.expand_as(edited.latent) == 0
    assert 0 < int(keep.sum()) < keep.numel()
    torch.testing.assert_close(edited.latent[keep], traj.clean[keep], rtol=0, atol=0)
    assert (free.latent[keep] - traj.clean[keep]).abs().max() > 1e-3
