"""StyleDiffusion on the tiny in-process model with a tiny random CLIP (built here, never downloaded)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.attention import AttentionRecorder, attention_hooks
from core.conditioning import Conditioning
from core.engine import EditRequest, Engine
from core.errors import ModelUnavailable
from core.methods.style_diffusion import method as sd
from core.sampling import ddim_invert, denoise, predict_cfg
from core.schedule import DDIMSchedule
from core.unet_calls import counters

GUIDANCE = 7.5
STEPS = 5


def tiny_clip_model(projection_dim: int = 16):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(3)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
                         pad_token_id=513),
        vision_config=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=projection_dim)
    return CLIPModel(cfg).eval()


def smooth_image(seed: int = 1, h: int = 32, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    return (F.avg_pool2d(img, 5, 1, 2) * 2).clamp(-1, 1)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def styled_model(tiny_model, tmp_path_factory):
    """The tiny diffusion model with a tiny CLIP bundled beside it (root/clip), as the demo ships one."""
    root = tmp_path_factory.mktemp("styled_root")
    tiny_clip_model().save_pretrained(root / "clip")
    return dataclasses.replace(tiny_model, model_id="tiny-styled", root=root)


def engine_for(model) -> Engine:
    eng = Engine()
    eng.models.get = lambda spec, progress=None: model
    return eng


@pytest.fixture(scope="module")
def trained(tiny_model):
    """Direct use of the pieces: CLIP tokens, inversion, training (small iteration counts)."""
    model = tiny_model
    img = smooth_image()
    tokens = sd.encode_clip_tokens(tiny_clip_model(), img, sd.text_hidden_size(model))
    schedule = DDIMSchedule(model.scheduler_config, STEPS)
    cond, uncond = model.encode_text("a photo"), model.encode_text("")
    with torch.no_grad():
        traj = ddim_invert(model, schedule, model.encode_image(img), cond)
    learned = sd.train_value_mappers(model, schedule, traj, tokens, cond, uncond, GUIDANCE, iters_scale=10, lr=1e-2)
    return dict(model=model, schedule=schedule, traj=traj, learned=learned, cond=cond, uncond=uncond, tokens=tokens)


def test_clip_tokens_are_all_tokens_at_text_width(tiny_model):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    img = smooth_image()
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                              num_attention_heads=4, image_size=32, patch_size=8)).eval()
    tokens = sd.encode_clip_tokens(vision, img, 32)
    assert tokens.shape == (1, (32 // 8) ** 2 + 1, 32)  # class token + 16 patches, resampled 48 -> 32
    # A CLIPModel whose visual projection lands on the text width uses it (CLIP's own map).
    clip = tiny_clip_model(projection_dim=32)
    tokens = sd.encode_clip_tokens(clip, img, 32)
    with torch.no_grad():
        hidden = clip.vision_model(pixel_values=sd.clip_pixels(img, 32)).last_hidden_state
        expected = clip.visual_projection(clip.vision_model.post_layernorm(hidden))
    torch.testing.assert_close(tokens, expected)


def test_training_lowers_the_reconstruction_loss(trained):
    learned = trained["learned"]
    assert learned.iterations > 0
    assert len(learned.mappers) == STEPS and learned.scales.shape == learned.shifts.shape == (STEPS, 77, 32)
    assert all(last <= first for first, last in zip(learned.first_losses, learned.last_losses))
    assert sum(learned.last_losses) < 0.9 * sum(learned.first_losses)
    # Step 0 starts from the plain prompt (value = c) and optimises away from it.
    assert learned.last_losses[0] < learned.first_losses[0]


def test_learned_embedding_changes_only_cross_attention_values(trained):
    model, traj, learned, cond = trained["model"], trained["traj"], trained["learned"], trained["cond"]
    t = trained["schedule"].timesteps[0]

    def record(values):
        hook = sd.ValueHook()
        hook.set(values)
        rec = AttentionRecorder(lambda layer: layer.is_cross, what=("q", "k", "v"))
        with torch.no_grad(), attention_hooks(model.unet, hook, rec):
            from core.unet_calls import unet_forward
            unet_forward(model, traj.noisiest, t, cond)
        return rec.records

    plain, styled = record(None), record(learned.value(0, cond))
    assert plain.keys() == styled.keys() and len(plain) >= 4
    v_changed = 0
    for name in plain:
        for a, b in zip(plain[name], styled[name]):
            torch.testing.assert_close(a["k"], b["k"], rtol=0, atol=0)  # keys come from the prompt
            v_changed += int(not torch.allclose(a["v"], b["v"]))
    assert v_changed == len(plain)  # every cross-attention layer gets the learned values
    # The first cross-attention layer's queries precede any change: identical too.
    first = next(iter(plain))
    torch.testing.assert_close(plain[first][0]["q"], styled[first][0]["q"], rtol=0, atol=0)


def test_learned_reconstruction_beats_the_plain_prompt(trained):
    model, schedule, traj, learned = trained["model"], trained["schedule"], trained["traj"], trained["learned"]
    cond, uncond = trained["cond"], trained["uncond"]

    def reconstruct(learned):
        hook = sd.ValueHook()

        def predict(x, i, t):
            hook.set(None if learned is None else learned.value(i, cond))
            with attention_hooks(model.unet, hook):
                return predict_cfg(model, x, t, cond, uncond, GUIDANCE)

        return denoise(model, schedule, traj.noisiest, predict)

    err_learned = F.mse_loss(reconstruct(learned), traj.clean).item()
    err_plain = F.mse_loss(reconstruct(None), traj.clean).item()
    assert err_learned < 0.9 * err_plain


def test_a_word_swap_changes_the_result_from_the_first_step(trained):
    # With every control at its strongest (values, cross- and self-attention maps from the source for
    # all steps) a word swap must still act: the target's values are the *target* prompt through the
    # learned scale and shift (official), not the source's learned value. With the source's value
    # copied over, the target branch would reproduce the source's reconstruction exactly.
    from core.unet_calls import unet_forward

    model, schedule, traj, learned = trained["model"], trained["schedule"], trained["traj"], trained["learned"]
    uncond = trained["uncond"]
    c_src, c_tgt = model.encode_text("a photo"), model.encode_text("a phono")  # same token count: a swap
    al = sd.align_tokens(model, "a photo", "a phono")
    assert al.kind == "word swap"
    p = sd.StyleDiffusionParams(prompt="a phono", source_prompt="a photo", tau_v=1.0, tau_c=1.0, tau_s=1.0,
                                tau_u=1.0, steps=STEPS, guidance=GUIDANCE)
    edited = sd.edit_latents(model, schedule, traj, learned, c_src, c_tgt, uncond, al, p)
    unchanged = sd.edit_latents(model, schedule, traj, learned, c_src, c_src, uncond,
                                sd.align_tokens(model, "a photo", "a photo"), p)
    assert (edited - unchanged).abs().mean() > 1e-3
    # ... from step 0: the first edit call's two conditional branches already differ
    x = torch.cat([traj.noisiest, traj.noisiest])
    values = sd.ValueHook()
    values.set(torch.cat([learned.value(0, c_tgt), learned.value(0, c_src)]), [sd.TGT_C, sd.SRC_C])
    _, self_layers = sd.layer_selectors(model.unet)
    control = sd.PromptToPromptControl(al, self_layers, 1, 1, 1)
    with torch.no_grad(), attention_hooks(model.unet, values, control):
        out = unet_forward(model, torch.cat([x, x]), schedule.timesteps[0],
                           Conditioning.cat([uncond, uncond, c_tgt, c_src]))
    assert (out[sd.TGT_C] - out[sd.SRC_C]).abs().mean() > 1e-4


def test_official_training_schedule_and_summed_regularisation():
    assert sd.train_lr_at(1e-2, 0, 30) == pytest.approx(1e-2)
    assert [sd.train_lr_at(1e-2, i, 30) for i in (10, 29)] == pytest.approx([1e-2 * 0.9, 1e-2 * 0.71])
    maps = [torch.full((2, 3), 1.0), torch.full((2, 3), 2.0)]
    refs = [torch.zeros(2, 3), torch.zeros(2, 3)]
    assert float(sd.attention_regularisation(maps, refs)) == pytest.approx(1.0 + 4.0)  # a sum, not a mean


def test_self_attention_control_covers_every_level_below_the_top_resolution():
    from diffusers import UNet2DConditionModel

    from core.attention import attention_layers

    sd1 = UNet2DConditionModel(  # SD 1.x's layout (four levels, attention in the top three)
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 8, 8, 8),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)
    reg, self_ctrl = sd.layer_selectors(sd1)
    chosen = {(lay.place, lay.block) for lay in attention_layers(sd1) if self_ctrl(lay)}
    # The official <= 32x32 at 512 px: down_blocks 1-2, the mid block, up_blocks 1-2; not the 64x64 level.
    assert chosen == {("down", 1), ("down", 2), ("mid", 0), ("up", 1), ("up", 2)}
    assert {(lay.place, lay.block) for lay in attention_layers(sd1) if reg(lay)} == {("down", 2), ("up", 1)}


def test_token_alignment(tiny_model):
    swap = sd.align_tokens(tiny_model, "a cat", "a dog")
    assert swap.kind == "word swap"
    assert torch.equal(swap.mapping, torch.arange(77)) and bool((swap.alphas == 1).all())
    # Char tokenizer: "a cat" = [bos, a, c, a, t, eos…]; "a red cat" = [bos, a, r, e, d, c, a, t, eos…].
    ref = sd.align_tokens(tiny_model, "a cat", "a red cat")
    assert ref.kind == "refinement"
    assert ref.mapping[:9].tolist() == [0, 1, 0, 0, 0, 2, 3, 4, 5]
    assert ref.alphas[:9].tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1]
    assert ref.mapping[76].item() == 76 - 7 + 4 and ref.alphas[76].item() == 1  # padding by offset


@pytest.mark.parametrize("uncond_steps", [0, 1])
def test_prompt_to_prompt_control_replaces_target_maps(tiny_model, uncond_steps):
    model = tiny_model
    al = sd.align_tokens(model, "a cat", "a red cat")
    _, self_layers = sd.layer_selectors(model.unet)
    control = sd.PromptToPromptControl(al, self_layers, cross_steps=1, self_steps=1, uncond_steps=uncond_steps)
    rec = AttentionRecorder(lambda layer: layer.is_cross or self_layers(layer), what=("probs",))
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb = model.encode_text(["", "", "a red cat", "a cat"])
    with torch.no_grad(), attention_hooks(model.unet, control, rec):
        from core.unet_calls import unet_forward
        unet_forward(model, torch.cat([x + 0.3, x - 0.3, x + 0.5, x - 0.5]), 500, emb)
    n_cross = n_self = 0
    for name, calls in rec.records.items():
        p = calls[0]["probs"]
        if ".attn2" in name:
            n_cross += 1
            torch.testing.assert_close(p[sd.TGT_C], sd.aligned(p[sd.SRC_C], p[sd.TGT_C], al, -1))
            assert not torch.allclose(p[sd.TGT_C][..., 2], p[sd.SRC_C][..., 0])  # new token kept its own
        else:
            n_self += 1
            torch.testing.assert_close(p[sd.TGT_C], p[sd.SRC_C])
        if uncond_steps and ".attn1" in name:  # improved unconditional branch: self-attention only
            torch.testing.assert_close(p[sd.TGT_U], p[sd.SRC_U])
        else:
            assert not torch.allclose(p[sd.TGT_U], p[sd.SRC_U])
    assert n_cross >= 4 and n_self >= 1


def test_new_words_are_emphasised_as_the_official_equalizer(tiny_model):
    # The official editing stacks P2P's AttentionReweight on every replacement: the new word's
    # replaced cross-attention ×2 (not renormalised), the other tokens as replaced.
    model = tiny_model
    p = sd.StyleDiffusionParams(source_prompt="a cat", prompt="a red cat")
    eq = sd.new_word_equalizer(model, p)
    # Char tokenizer: "a red cat" = [bos, a, r, e, d, c, a, t, eos…]: the new tokens are r, e, d (2-4).
    assert eq[:9].tolist() == [1, 1, 2, 2, 2, 1, 1, 1, 1] and bool((eq[9:] == 1).all())
    assert sd.new_word_equalizer(model, sd.StyleDiffusionParams(source_prompt="a cat", prompt="a red cat",
                                                                new_word_weight=1.0)) is None
    assert sd.new_word_equalizer(model, sd.StyleDiffusionParams(source_prompt="a cat", prompt="a cat")) is None
    assert sd.new_word_equalizer(model, sd.StyleDiffusionParams(source_prompt="", prompt="a red cat")) is None

    al = sd.align_tokens(model, "a cat", "a red cat")
    _, self_layers = sd.layer_selectors(model.unet)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb = model.encode_text(["", "", "a red cat", "a cat"])
    maps = {}
    for name, equalizer in (("plain", None), ("weighted", eq)):
        control = sd.PromptToPromptControl(al, self_layers, 1, 1, 0, equalizer)
        rec = AttentionRecorder(lambda layer: layer.is_cross, what=("probs",))
        with torch.no_grad(), attention_hooks(model.unet, control, rec):
            from core.unet_calls import unet_forward
            unet_forward(model, torch.cat([x + 0.3, x - 0.3, x + 0.5, x - 0.5]), 500, emb)
        maps[name] = {k: calls[0]["probs"][sd.TGT_C] for k, calls in rec.records.items()}
    layer = next(iter(maps["plain"]))
    plain, weighted = maps["plain"][layer], maps["weighted"][layer]
    torch.testing.assert_close(weighted[..., 2:5], 2 * plain[..., 2:5])
    torch.testing.assert_close(weighted[..., [0, 1, 5, 6]], plain[..., [0, 1, 5, 6]])


def test_end_to_end_with_mask_keeps_outside_and_cache_skips_training(styled_model):
    eng = engine_for(styled_model)
    rgb = to_uint8(smooth_image(2, 32, 40))
    mask = np.zeros((32, 40), np.float32)
    mask[8:24, 10:30] = 1
    params = dict(source_prompt="a cat", prompt="a dog", steps=4, train_iters_scale=3)
    events = []
    first = eng.run(EditRequest("style-diffusion", rgb, params, mask=mask), events=events.append)
    out = np.asarray(first.image)
    assert out.shape == rgb.shape
    outside = np.ones((32, 40), bool)
    outside[5:27, 7:33] = False  # past the compositing feather
    assert np.array_equal(out[outside], rgb[outside])
    assert not np.array_equal(out[10:22, 12:28], rgb[10:22, 12:28])
    assert first.info["trained"] and first.info["train_iterations"] > 0
    assert first.info["clip_tokens"] == 17 and first.info["alignment"] == "word swap"
    assert first.passes.get("unet_grad", 0) > 0
    train_steps = [e for e in events if e.stage == "train" and e.step > 0]
    assert len(train_steps) == 4 and all(e.preview is not None for e in train_steps)
    assert {"invert", "train", "edit"} <= set(first.stages)
    # One batched UNet call per edit step (target and source, both guided).
    edit_steps = [e for e in events if e.stage == "edit" and e.step > 0]
    assert len(edit_steps) == 4

    events.clear()
    before = counters(styled_model)["unet"]
    second = eng.run(EditRequest("style-diffusion", rgb, {**params, "prompt": "a red cat", "tau_u": 0.5},
                                 mask=mask), events=events.append)
    assert not second.info["trained"] and second.info["alignment"] == "refinement"
    assert second.passes.get("unet_grad", 0) == 0
    assert counters(styled_model)["unet"] - before == 4  # no inversion, no training: the 4 edit calls
    assert any(e.stage == "train" and e.message == "reused" for e in events)
    assert np.array_equal(np.asarray(second.image)[outside], rgb[outside])


def test_source_rows_leave_the_call_after_the_control_window_without_changing_the_edit(trained):
    # Issue 23: after the last controlled step the source branch gives the target nothing, so its
    # two rows are dropped (batch 4 -> 2); the target's latent is the same as with them to the end.
    from core.unet_calls import counters

    model, schedule, traj, learned = trained["model"], trained["schedule"], trained["traj"], trained["learned"]
    c_src, c_tgt = model.encode_text("a photo"), model.encode_text("a red photo")
    al = sd.align_tokens(model, "a photo", "a red photo")
    p = sd.StyleDiffusionParams(prompt="a red photo", source_prompt="a photo", tau_v=0.25, tau_c=0.5, tau_s=0.25,
                                steps=STEPS, guidance=GUIDANCE)
    before = counters(model)["unet_samples"]
    cut = sd.edit_latents(model, schedule, traj, learned, c_src, c_tgt, trained["uncond"], al, p)
    rows_cut = counters(model)["unet_samples"] - before
    full = sd.edit_latents(model, schedule, traj, learned, c_src, c_tgt, trained["uncond"], al, p, keep_source=True)
    rows_full = counters(model)["unet_samples"] - before - rows_cut
    controlled = sd.steps_for(0.5, STEPS)
    assert rows_full == 4 * STEPS and rows_cut == 4 * controlled + 2 * (STEPS - controlled)
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def test_missing_clip_is_model_unavailable(tiny_model, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from core import aux_models

    monkeypatch.setattr(aux_models, "_cache", {})
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = dataclasses.replace(tiny_model, model_id="tiny-without-clip", root=tmp_path)
    before = counters(model)["unet"]
    with pytest.raises(ModelUnavailable) as err:
        engine_for(model).run(EditRequest("style-diffusion", to_uint8(smooth_image()), {"prompt": "a dog"}))
    assert "StyleDiffusion" in str(err.value) and "CLIP" in str(err.value)
    assert counters(model)["unet"] == before  # failed before any work
