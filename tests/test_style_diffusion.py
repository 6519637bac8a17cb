"""StyleDiffusion on the tiny in-process model with a tiny random CLIP (built here, never downloaded)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.attention import AttentionRecorder, attention_hooks
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
    assert len(learned.mappers) == STEPS and learned.values.shape == (STEPS, 77, 32)
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

    plain, styled = record(None), record(learned.values[:1])
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

    def reconstruct(values):
        hook = sd.ValueHook()

        def predict(x, i, t):
            hook.set(None if values is None else values[i: i + 1])
            with attention_hooks(model.unet, hook):
                return predict_cfg(model, x, t, cond, uncond, GUIDANCE)

        return denoise(model, schedule, traj.noisiest, predict)

    err_learned = F.mse_loss(reconstruct(learned.values), traj.clean).item()
    err_plain = F.mse_loss(reconstruct(None), traj.clean).item()
    assert err_learned < 0.9 * err_plain


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
        if uncond_steps:  # improved unconditional branch: the same control on the unconditional half
            torch.testing.assert_close(p[sd.TGT_U], p[sd.SRC_U])
        else:
            assert not torch.allclose(p[sd.TGT_U], p[sd.SRC_U])
    assert n_cross >= 4 and n_self >= 1


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
