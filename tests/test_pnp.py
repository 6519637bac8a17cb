"""PnP restyling on the tiny in-process model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.attention import AttentionHook, AttentionRecorder, AttnCall, attention_hooks, parse_layer_name
from core.engine import EditRequest
from core.errors import InvalidInput
from core.methods.pnp.method import (PnPParams, QKInjection, changed_words_blend, injected_steps, injection_plan,
                                     negative_alpha_at, pnp_denoise)
from core.registry import get_method
from core.sampling import Trajectory, ddim_invert, denoise
from core.schedule import DDIMSchedule
from core.unet_calls import counters, unet_forward
from core.unet_layout import decoder_layers


def _image(w=40, h=32):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 6 % 256, yy * 7 % 256, ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < 90) * 200 + 20],
                    -1).astype(np.uint8)


def _sampled_trajectory(model, schedule, emb, seed=1):
    """A trajectory that DDIM denoising itself produced (x_T -> x_0 with `emb`, guidance 1): what an
    exact inversion would return. Its clean end is the plain reconstruction from its x_T."""
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))
    lats = [x_t]
    clean = denoise(model, schedule, x_t, lambda x, i, t: unet_forward(model, x, t, emb),
                    after_step=lambda x, i: lats.append(x) or None)
    return Trajectory(torch.cat(lats), list(schedule.timesteps)), clean


def test_full_injection_with_target_equal_source_reproduces_the_reconstruction(tiny_model):
    # Why this is exact: at step i the target latent equals the source latent at t_i (true at x_T;
    # inductively after), the target prompt is the source prompt, and with α = 0 the unconditional
    # branch is ε(source prompt) = the conditional one, so guidance 7.5 adds exactly nothing. All rows
    # then compute the same thing, the copied features/q/k are the values they already had, and the
    # DDIM step lands on the source latent at t_{i+1}. The source latents must come from a trajectory
    # DDIM denoising reproduces, i.e. an exact inversion; a real 8-step DDIM inversion is not exact
    # (ε is evaluated one timestep off), so there the claim holds only approximately.
    model = tiny_model
    schedule = DDIMSchedule(model.scheduler_config, 8)
    traj, reconstruction = _sampled_trajectory(model, schedule, model.encode_text("a red fox"))
    p = PnPParams(prompt="a red fox", source_prompt="a red fox", feature_injection=1.0,
                  attention_injection=1.0, negative_alpha=0.0, guidance=7.5, steps=8)
    out, info = pnp_denoise(model, schedule, traj, p)
    assert info["feature_steps"] == info["attention_steps"] == 8
    assert info["unet_batches"] == {"batch 4": 8}
    torch.testing.assert_close(out, reconstruction, atol=1e-4, rtol=1e-5)
    # ... and the claim can fail: plain guidance (α = 1) with the same settings departs from it.
    out_cfg, _ = pnp_denoise(model, schedule, traj, p.replace(negative_alpha=1.0))
    assert (out_cfg - reconstruction).abs().max() > 0.1


def test_without_injection_and_same_prompt_equals_the_reconstruct_method(engine_with_tiny):
    # With real (inexact) inversion the injection-free target branch is the plain reconstruction,
    # exactly: the rows of one batch do not interact.
    img = _image()
    rec = engine_with_tiny.run(EditRequest("reconstruct", img, {"prompt": "a fox", "steps": 6}))
    pnp = engine_with_tiny.run(EditRequest("pnp", img, {
        "prompt": "a fox", "source_prompt": "a fox", "steps": 6, "guidance": 1.0,
        "feature_injection": 0.0, "attention_injection": 0.0}))
    diff = np.abs(np.asarray(rec.image, dtype=int) - np.asarray(pnp.image, dtype=int))
    assert diff.max() <= 1
    assert "unet" not in pnp.passes or pnp.passes["unet"] == 6  # the reconstruct's inversion was reused


def test_injection_off_changes_the_output(tiny_model):
    model = tiny_model
    schedule = DDIMSchedule(model.scheduler_config, 8)
    traj, _ = _sampled_trajectory(model, schedule, model.encode_text(""))
    p = PnPParams(prompt="a blue car", steps=8)
    injected, _ = pnp_denoise(model, schedule, traj, p)
    plain, info = pnp_denoise(model, schedule, traj, p.replace(feature_injection=0.0, attention_injection=0.0))
    assert info["feature_steps"] == info["attention_steps"] == 0
    assert (injected - plain).abs().mean() > 1e-2
    # Injection pulls the edit toward the source's own clean latent (its structure).
    assert (injected - traj.clean).abs().mean() < (plain - traj.clean).abs().mean()


def test_injected_tensors_equal_the_recorded_source_tensors(tiny_model):
    model = tiny_model
    steps = 6
    schedule = DDIMSchedule(model.scheduler_config, steps)
    src_emb = model.encode_text("a red fox")
    latent0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    traj = ddim_invert(model, schedule, latent0, src_emb)
    # The linear schedule from α = 1: step 0 runs at batch 3, later steps at batch 4 (all target rows injected).
    p = PnPParams(prompt="a blue car", source_prompt="a red fox", feature_injection=0.5,
                  attention_injection=0.34, negative_alpha=1.0, negative_schedule="linear", steps=steps)
    n_feat, n_attn = injected_steps(p.feature_injection, steps), injected_steps(p.attention_injection, steps)
    assert (n_feat, n_attn) == (3, 2)

    plan = injection_plan(model.unet)
    layer = next(lay for lay in decoder_layers(model.unet) if lay.index == plan.feature_layer)
    assert plan.feature_module is layer.resnet.conv2
    injected_names = [n.removesuffix(".processor") for n in model.unet.attn_processors
                      if (lambda li: li.place == "up" and li.kind == "attn1"
                          and (li.block, li.index) in plan.attention_layers)(parse_layer_name(n))]
    assert injected_names
    untouched = next(n.removesuffix(".processor") for n in model.unet.attn_processors
                     if n.startswith("down_blocks.1") and ".attn1" in n)

    # What the target rows receive: observers run after the injection; the resnet's inputs and
    # (injected) output are recorded around it.
    seen = AttentionRecorder(lambda li: li.kind == "attn1", what=("q", "k", "v"))
    calls = []
    handle = layer.resnet.register_forward_hook(
        lambda mod, args, out: calls.append((args[0].detach().clone(), args[1].detach().clone(), out.detach().clone())))
    try:
        _, info = pnp_denoise(model, schedule, traj, p, observers=[seen])
    finally:
        handle.remove()
    assert info["unet_batches"] == {"batch 3": 1, "batch 4": steps - 1}
    assert info["feature_layer"].endswith(".conv2")
    assert len(calls) == steps

    resnet = layer.resnet
    for i, t in enumerate(schedule.timesteps):
        # The hand computation: with no hook, resnet(x) = (shortcut(x) + branch(x)) / scale, so the
        # residual branch of a row is scale·resnet(x) − shortcut(x). Injection replaces only the
        # branch: target row r must give (shortcut(x_r) + branch(x_source)) / scale.
        x, temb, out = calls[i]
        with torch.no_grad():
            plain = resnet(x, temb)
            shortcut = resnet.conv_shortcut(x) if resnet.conv_shortcut is not None else x
        scale = resnet.output_scale_factor
        branch = plain * scale - shortcut
        for row in range(1, x.shape[0]):
            if i < n_feat:
                want = (shortcut[row:row + 1] + branch[:1]) / scale
                torch.testing.assert_close(out[row:row + 1], want, atol=1e-5, rtol=1e-5)
                # ... which is not the old rule (the source's whole block output)
                assert not torch.allclose(out[row:row + 1], plain[:1], atol=1e-3)
            else:
                torch.testing.assert_close(out[row:row + 1], plain[row:row + 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:1], plain[:1], atol=1e-5, rtol=1e-5)  # the source row is itself

        # The source branch alone, recorded in a separate pass.
        ref = AttentionRecorder(lambda li: li.kind == "attn1", what=("q", "k", "v"))
        with attention_hooks(model.unet, ref):
            unet_forward(model, traj.at(i), t, src_emb)
        for name in injected_names:
            got, want = seen.records[name][i], ref.records[name][0]
            for key in ("q", "k"):
                if i < n_attn:
                    for row in range(1, got[key].shape[0]):
                        torch.testing.assert_close(got[key][row:row + 1], want[key], atol=1e-5, rtol=1e-5)
                else:
                    assert not torch.allclose(got[key][1], got[key][0], atol=1e-4)
            assert not torch.allclose(got["v"][2], got["v"][0], atol=1e-4)  # values are never injected
        # layers outside the plan are left alone
        got = seen.records[untouched][i]
        assert not torch.allclose(got["q"][2], got["q"][0], atol=1e-4)


def test_sd1_layout_picks_the_papers_layers():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 8, 8, 8),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)
    plan = injection_plan(unet)
    assert plan.feature_layer == 4 and plan.feature_name == "up_blocks.1.resnets.1.conv2"
    assert plan.feature_module is unet.up_blocks[1].resnets[1].conv2
    hook = QKInjection(plan.attention_layers)
    hook.active = True
    chosen = sorted(n.removesuffix(".transformer_blocks.0.attn1.processor") for n in unet.attn_processors
                    if hook.applies(AttnCall(parse_layer_name(n), None, None, None)))
    assert chosen == ["up_blocks.1.attentions.1", "up_blocks.1.attentions.2"] + [
        f"up_blocks.{b}.attentions.{a}" for b in (2, 3) for a in range(3)]


def test_second_edit_reuses_the_inversion_and_reports_progress(engine_with_tiny, tiny_model):
    img = _image()
    events = []
    first = engine_with_tiny.run(EditRequest("pnp", img, {"prompt": "a blue car", "steps": 5}),
                                 events=events.append)
    # feature injection 0.8 of 5 steps: 4 steps at batch 3 (source, ∅, target), the last at batch 2
    assert first.passes["unet"] == 5 + 5 and first.passes["unet_samples"] == 5 + 4 * 3 + 2
    for stage in ("invert", "edit"):
        steps = [e for e in events if e.stage == stage and e.step > 0]
        assert len(steps) == 5 and all(e.preview is not None and e.preview.ndim == 3 for e in steps)

    before = dict(counters(tiny_model))
    events.clear()
    second = engine_with_tiny.run(EditRequest("pnp", img, {"prompt": "a watercolor painting", "steps": 5,
                                                           "feature_injection": 0.6}), events=events.append)
    after = counters(tiny_model)
    assert after["unet"] - before["unet"] == 5            # the edit's 5 batched calls, no inversion pass
    assert after["unet_samples"] - before["unet_samples"] == 3 * 3 + 2 * 2  # injection over 3 of the 5 steps
    assert second.passes.get("vae_encode", 0) == 0
    assert [e.message for e in events if e.stage == "invert" and e.step > 0] == ["reused"]
    assert not np.array_equal(np.asarray(first.image), np.asarray(second.image))


def test_mask_keeps_outside_pixels_and_source_latent(engine_with_tiny, tiny_model):
    img = _image()
    mask = np.zeros(img.shape[:2], np.float32)
    mask[8:24, 10:30] = 1.0
    res = engine_with_tiny.run(EditRequest("pnp", img, {"prompt": "a blue car", "steps": 4}, mask=mask))
    out = np.asarray(res.image)
    from core.images import feathered
    outside = feathered(mask) == 0
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out[mask > 0], img[mask > 0])

    # The latent outside the mask follows the source trajectory to its clean end.
    model = tiny_model
    schedule = DDIMSchedule(model.scheduler_config, 4)
    traj, _ = _sampled_trajectory(model, schedule, model.encode_text(""))
    keep = torch.zeros(1, 1, 16, 16)
    keep[..., 4:12, 4:12] = 1.0
    latent, _ = pnp_denoise(model, schedule, traj, PnPParams(prompt="a blue car", steps=4), keep_mask=keep)
    assert torch.equal(latent[..., keep[0, 0] == 0], traj.clean[..., keep[0, 0] == 0])
    assert not torch.allclose(latent[..., keep[0, 0] == 1], traj.clean[..., keep[0, 0] == 1])


def test_parameters_schedule_and_validation():
    method = get_method("pnp")
    assert method.plain_name == "Restyle" and method.paper == "Plug-and-Play" and method.stages == ("invert", "edit")
    described = {d["name"]: d for d in PnPParams.describe()}
    expected = {"prompt": "", "source_prompt": "", "feature_injection": 0.8, "attention_injection": 0.5,
                "negative_alpha": 1.0, "negative_schedule": "constant", "guidance": 7.5, "local_blend": True,
                "steps": 50, "seed": 0}
    assert {k: described[k]["default"] for k in expected} == expected
    assert described["prompt"]["required"] and described["prompt"]["type"] == "text"
    assert described["negative_schedule"]["choices"] == ["constant", "linear", "exp"]
    assert described["feature_injection"]["flag"] == "--feature-injection"
    assert (injected_steps(0.8, 50), injected_steps(0.5, 50), injected_steps(1.0, 7)) == (40, 25, 7)

    # The official plug-and-play schedules: α·flip(linspace(0, 1, n)), α·exp(−6·linspace(0, 1, n)).
    p = PnPParams(prompt="x", source_prompt="y", negative_alpha=0.75, negative_schedule="linear", steps=5)
    assert [negative_alpha_at(p, i, 5) for i in range(5)] == pytest.approx([0.75, 0.5625, 0.375, 0.1875, 0.0])
    assert negative_alpha_at(p.replace(negative_schedule="constant"), 3, 5) == 0.75
    ramp = p.replace(negative_alpha=1.0)  # linear does something at the default α
    assert [negative_alpha_at(ramp, i, 3) for i in range(3)] == pytest.approx([1.0, 0.5, 0.0])
    assert negative_alpha_at(p.replace(negative_schedule="exp"), 4, 5) == pytest.approx(0.75 * np.exp(-6))

    with pytest.raises(InvalidInput):
        PnPParams.from_dict({"source_prompt": "a cat"})  # the target prompt is required
    with pytest.raises(InvalidInput, match="source_prompt"):
        PnPParams.from_dict({"prompt": "a dog", "negative_alpha": 0.5})
    with pytest.raises(InvalidInput):
        PnPParams.from_dict({"prompt": "a dog", "feature_injection": 1.5})
    with pytest.raises(InvalidInput, match="source_prompt"):
        PnPParams.from_dict({"prompt": "a dog", "negative_schedule": "linear"})
    with pytest.raises(InvalidInput):
        PnPParams.from_dict({"prompt": "a dog", "source_prompt": "a cat", "negative_schedule": "cosine"})


def test_linear_negative_schedule_acts_at_the_default_alpha(tiny_model):
    # The official linear schedule ramps α to 0, so it changes the edit even at α = 1 (before the
    # fix it went "from 1 to α" and did nothing there).
    model = tiny_model
    schedule = DDIMSchedule(model.scheduler_config, 6)
    traj, _ = _sampled_trajectory(model, schedule, model.encode_text("a red fox"))
    p = PnPParams(prompt="a blue car", source_prompt="a red fox", steps=6)
    plain, info_plain = pnp_denoise(model, schedule, traj, p)
    ramped, info = pnp_denoise(model, schedule, traj, p.replace(negative_schedule="linear"))
    # injection over the first 4 steps (0.8 · 6), then the source row is dropped
    assert info_plain["unet_batches"] == {"batch 3": 4, "batch 2": 2}
    # step 0 is plain guidance (α_0 = 1); steps 1-3 add the source-prompt row, 4-5 drop the source's
    assert info["unet_batches"] == {"batch 3": 1 + 2, "batch 4": 3}
    assert (ramped - plain).abs().mean() > 1e-3


class _Watcher(AttentionHook):
    """An observer that changes nothing: with one, pnp_denoise keeps the source row at every step."""

    def applies(self, call):
        return False


@pytest.mark.parametrize("source_prompt, schedule", [("", "constant"), ("a red fox", "linear")])
def test_dropping_the_source_row_after_injection_changes_nothing(tiny_model, source_prompt, schedule):
    # Issue 23: after the injection window the source row is no longer run (batch 3 -> 2). The rows
    # of a batch do not interact, so the edit equals the one that kept the row to the end.
    model = tiny_model
    steps = 6
    sched = DDIMSchedule(model.scheduler_config, steps)
    traj, _ = _sampled_trajectory(model, sched, model.encode_text(source_prompt))
    p = PnPParams(prompt="a blue car", source_prompt=source_prompt, steps=steps, negative_schedule=schedule,
                  feature_injection=0.5, attention_injection=0.3)
    cut, info = pnp_denoise(model, sched, traj, p)
    full, info_full = pnp_denoise(model, sched, traj, p, observers=[_Watcher()])
    assert sum(info["unet_batches"].values()) == steps
    rows = lambda batches: sum(int(k.split()[1]) * v for k, v in batches.items())
    assert rows(info["unet_batches"]) == rows(info_full["unet_batches"]) - (steps - 3)  # 3 = 0.5 · 6 injected
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def test_local_blend_keeps_the_source_outside_the_changed_words(tiny_model):
    # With a source prompt, only where the changed words ("red" / "blue") are seen may the latent
    # change: outside, from a fifth of the steps on, it is the source trajectory's, exactly.
    model = tiny_model
    steps = 6
    sched = DDIMSchedule(model.scheduler_config, steps)
    traj, _ = _sampled_trajectory(model, sched, model.encode_text("a red fox"))
    p = PnPParams(prompt="a blue fox", source_prompt="a red fox", steps=steps)
    blended, info = pnp_denoise(model, sched, traj, p)
    plain, info_plain = pnp_denoise(model, sched, traj, p.replace(local_blend=False))
    assert info_plain["local_blend"] is None
    share = info["local_blend"]["editable_share"]
    assert 0.0 < share < 1.0
    blend = changed_words_blend(model, p, (16, 16), steps)
    ids = model.tokenize([p.source_prompt, p.prompt])
    red, blue = (model.tokenizer(w, add_special_tokens=False).input_ids for w in ("red", "blue"))
    assert [ids[0][j].item() for j in blend.source_tokens] == red
    assert [ids[1][j].item() for j in blend.target_tokens] == blue
    kept = (blended == traj.clean).all(1)[0]               # [h, w] cells equal to the source's end
    assert kept.float().mean().item() == pytest.approx(1.0 - share)
    assert not torch.equal(plain[..., kept], traj.clean[..., kept])  # without it they are restyled
    assert not torch.allclose(blended[..., ~kept], traj.clean[..., ~kept])


def test_local_blend_needs_a_source_prompt_that_differs(tiny_model):
    # Without a source prompt nothing says what to keep: the whole picture is restyled (official PnP).
    model = tiny_model
    assert changed_words_blend(model, PnPParams(prompt="a blue fox"), (16, 16), 6) is None
    assert changed_words_blend(model, PnPParams(prompt="a fox", source_prompt="a fox"), (16, 16), 6) is None
    longer = changed_words_blend(model, PnPParams(prompt="a large blue fox", source_prompt="a red fox"), (16, 16), 6)
    assert len(longer.source_tokens) >= 1 and len(longer.target_tokens) >= 2
