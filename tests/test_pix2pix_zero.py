"""pix2pix-zero: edit directions, noise regularisation, cross-attention guidance, the method end to end."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.methods.pix2pix_zero import directions as ed
from core.cache import LRUCache
from core.engine import EditRequest
from core.errors import InvalidInput, ModelUnavailable
from core.images import feathered
from core.methods.pix2pix_zero.noise_regularization import NoiseRegularizer, autocorrelation, kl_loss, pair_loss, regularize_noise
from core.sampling import ddim_invert
from core.schedule import DDIMSchedule

P2PZ = "pix2pix-zero"


def _image(h=40, w=48, seed=0):
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5.0)], -1) * 200
    return np.clip(base + rng.rand(h, w, 3) * 40, 0, 255).astype(np.uint8)


class EncoderCalls:
    """Counts text-encoder forwards (and the sentences they encode)."""

    def __init__(self, model):
        self.model = model
        self.calls = 0
        self.rows = 0

    def __enter__(self):
        def hook(_m, args, kwargs, _out):
            ids = args[0] if args else kwargs["input_ids"]
            self.calls += 1
            self.rows += ids.shape[0]
        self.handle = self.model.text_encoder.register_forward_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# ---- edit directions ------------------------------------------------------------------------------

def test_sentence_bank_has_about_a_thousand_sentences_per_word():
    templates = ed.load_templates()
    assert 900 <= len(templates) <= 2000
    assert all(t.count("{}") == 1 for t in templates)
    cats = ed.sentences_for("cat")
    assert len(cats) == len(templates) and len(set(cats)) == len(cats)
    assert all("cat" in s and "{}" not in s for s in cats)
    assert "this is a picture of an apple." in " ".join(ed.sentences_for("apple"))
    assert "a apple" not in " ".join(ed.sentences_for("apple"))


def test_direction_is_difference_of_sentence_means(tiny_model):
    def mean_of(word):  # computed independently: one tokenizer call, big chunks, float64 sum
        sentences = [t.replace("{}", word) for t in ed.load_templates()]
        ids = tiny_model.tokenizer(sentences, padding="max_length", max_length=77, truncation=True,
                                   return_tensors="pt").input_ids
        with torch.no_grad():
            outs = [tiny_model.text_encoder(chunk)[0].double() for chunk in ids.split(300)]
        return torch.cat(outs).mean(0)

    direction = ed.edit_direction(tiny_model, "cat", "dog").embeds
    assert direction.shape == (1, 77, tiny_model.text_encoder.config.hidden_size)
    expected = (mean_of("dog") - mean_of("cat")).float()
    assert expected.abs().max() > 1e-3  # the words differ, so does the direction
    torch.testing.assert_close(direction[0], expected, atol=2e-5, rtol=1e-4)


def test_direction_is_cached_per_word_pair(tiny_model):
    cache = LRUCache(16)
    with EncoderCalls(tiny_model) as first:
        d1 = ed.edit_direction(tiny_model, "horse", "zebra", cache)
    n = len(ed.load_templates())
    assert first.rows == 2 * n and first.calls == 2 * -(-n // ed.BATCH)  # batched, 64 at a time
    with EncoderCalls(tiny_model) as second:
        d2 = ed.edit_direction(tiny_model, "horse", "zebra", cache)
        d3 = ed.edit_direction(tiny_model, "zebra", "horse", cache)  # word means are shared
    assert second.calls == 0
    assert torch.equal(d1.embeds, d2.embeds) and torch.allclose(d3.embeds, -d1.embeds)


def test_a_model_folder_may_ship_its_own_sentence_bank(tiny_model, tmp_path):
    import dataclasses

    assert ed.bank_path(tiny_model) == ed.BANK_PATH  # no bank of its own: the generic one
    (tmp_path / "sentences.txt").write_text("# a comment\na red {} on the left\na {} at the top\n")
    own = dataclasses.replace(tiny_model, root=tmp_path, model_id="tiny-with-bank", _text_cache={})
    assert ed.bank_path(own) == tmp_path / "sentences.txt"
    cache = LRUCache(16)
    with EncoderCalls(own) as enc:
        d_own = ed.edit_direction(own, "cat", "dog", cache)
    assert enc.rows == 2 * 2  # two sentences per word, from the model's bank
    sentences = ["a red dog on the left", "a dog at the top", "a red cat on the left", "a cat at the top"]
    with torch.no_grad():
        out = own.text_encoder(own.tokenize(sentences))[0].float()
    torch.testing.assert_close(d_own.embeds[0], out[:2].mean(0) - out[2:].mean(0), atol=2e-5, rtol=1e-4)
    # the generic bank's direction is another one, and the cache keeps the two apart
    d_generic = ed.edit_direction(tiny_model, "cat", "dog", cache)
    assert not torch.allclose(d_own.embeds, d_generic.embeds)
    (tmp_path / "sentences.txt").write_text("no slot here\n")
    ed.load_templates.cache_clear()
    with pytest.raises(InvalidInput, match="malformed"):
        ed.edit_direction(own, "cat", "horse")


def test_the_demo_ships_a_shapesworld_bank_in_its_folder():
    from resources import resource_path

    bank = ed.load_templates(resource_path("models", "demo", "sentences.txt"))
    from tools.shapesworld import POSITIONS, SHAPES

    assert len(bank) >= 500 and all(t.count("{}") == 1 for t in bank)
    after = [t.split("{}")[1].lstrip(" ,") for t in bank]
    colour_slots = sum(a.startswith(SHAPES) for a in after)  # "a large {} circle ...", "a {} ring"
    # "a large red {} on the left ...", "a striped {}, on a blue background", "a red {}"
    shape_slots = sum(a == "" or a.startswith(tuple(POSITIONS) + ("on a ",)) for a in after)
    assert colour_slots + shape_slots == len(bank) and min(colour_slots, shape_slots) >= len(bank) // 3
    # full captions, as the demo first learnt, and partial ones ("a {} circle"), as it also reads now
    full = sum(t.startswith(("a small ", "a medium ", "a large ")) and t.endswith("background") for t in bank)
    partial = sum(not t.endswith("background") for t in bank)
    assert full >= len(bank) // 2 and partial >= len(bank) // 8, (full, partial)


def test_empty_unknown_and_equal_words_are_invalid(tiny_model):
    tok = tiny_model.tokenizer
    for bad in ("", "   ", "\t\n"):
        with pytest.raises(InvalidInput, match="empty"):
            ed.check_word_pair(tok, bad, "dog")
    with pytest.raises(InvalidInput, match="same"):
        ed.check_word_pair(tok, "cat", " Cat ")  # the same tokens after lower-casing

    class Tok:  # a tokenizer that knows no word at all / drops everything
        unk_token_id = 0
        all_special_ids = [0, 1]

        def __init__(self, ids):
            self.ids = ids

        def __call__(self, text, add_special_tokens=False):
            return types.SimpleNamespace(input_ids=list(self.ids))

    with pytest.raises(InvalidInput, match="unknown"):
        ed.word_token_ids(Tok([0, 0]), "qwxz")
    with pytest.raises(InvalidInput, match="nothing"):
        ed.word_token_ids(Tok([]), "\u200b")


@pytest.mark.parametrize("params, match", [
    ({"source_word": "", "target_word": "dog"}, "source_word"),
    ({"source_word": "cat", "target_word": "  "}, "target_word"),
    ({"source_word": "cat", "target_word": "CAT"}, "same"),
])
def test_engine_rejects_bad_words(engine_with_tiny, params, match):
    with pytest.raises(InvalidInput, match=match):
        engine_with_tiny.run(EditRequest(P2PZ, _image(), {**params, "source_prompt": "a cat", "steps": 3}))


# ---- noise regularisation -------------------------------------------------------------------------

def test_regularisation_decorrelates_synthetic_noise():
    g = torch.Generator().manual_seed(0)
    white = torch.randn(1, 4, 32, 32, generator=g)
    correlated = F.avg_pool2d(F.pad(white, (1, 1, 1, 1), mode="circular"), 3, stride=1) * 3
    before = autocorrelation(correlated)
    after = autocorrelation(regularize_noise(correlated, generator=torch.Generator().manual_seed(1)))
    assert before > 20 * autocorrelation(white)  # the synthetic noise is strongly correlated
    assert after < 0.25 * before
    # each term is what it says: L_KL is zero for N(0,1) statistics and grows away from them
    assert kl_loss(white) < 0.01 < kl_loss(2 * white)
    assert pair_loss(correlated, shifts=[(1, 1), (1, 1)]) > 10 * pair_loss(white, shifts=[(1, 1), (1, 1)])


def test_regularised_inversion_noise_is_whiter(tiny_model):
    schedule = DDIMSchedule(tiny_model.scheduler_config, 6)
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.8
    cond = tiny_model.encode_text("a cat")
    reg = NoiseRegularizer(5, 20.0, 20.0, seed=0, schedule=schedule)
    seen = []

    def refiner(eps, x, t, i):
        out = reg(eps, x, t, i)
        seen.append((autocorrelation(eps).item(), autocorrelation(out).item()))
        return out

    traj = ddim_invert(tiny_model, schedule, latent, cond, eps_refiner=refiner)
    plain = ddim_invert(tiny_model, schedule, latent, cond)
    assert len(seen) == 6
    assert all(after < before for before, after in seen)
    assert sum(a for _, a in seen) < 0.8 * sum(b for b, _ in seen)
    assert not torch.allclose(traj.noisiest, plain.noisiest)
    # reproducible: the refiner's shifts come from (seed, step), so its key names the result
    again = ddim_invert(tiny_model, schedule, latent, cond,
                        eps_refiner=NoiseRegularizer(5, 20.0, 20.0, seed=0, schedule=schedule))
    assert torch.equal(again.noisiest, traj.noisiest)


# ---- cross-attention guidance ---------------------------------------------------------------------

def test_cross_attention_guidance_lowers_attention_loss(tiny_model):
    from core.methods.pix2pix_zero.method import CrossAttentionLoss, edit_pass, reference_pass
    from core.attention import attention_hooks
    from core.unet_calls import unet_forward

    schedule = DDIMSchedule(tiny_model.scheduler_config, 5)
    cond = tiny_model.encode_text("a cat")
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5)) * 0.8
    traj = ddim_invert(tiny_model, schedule, latent, cond)
    x_T = traj.noisiest
    cond_edit = cond.float() + ed.edit_direction(tiny_model, "cat", "dog")
    ref = reference_pass(tiny_model, schedule, traj, cond)
    assert len(ref) == 5
    n_cross = sum(1 for name in tiny_model.unet.attn_processors if name.endswith("attn2.processor"))
    assert all(len(step) == n_cross for step in ref)  # every cross-attention layer, every step
    # The reference is the inversion trajectory's own maps (Direct Inversion), not those of a
    # reconstruction re-generated from x_T, which drifts from the input.
    from core.methods.pix2pix_zero.method import CrossAttentionMaps
    for i in (1, 4):
        rec = CrossAttentionMaps(tiny_model.dtype)
        with torch.no_grad(), attention_hooks(tiny_model.unet, rec):
            unet_forward(tiny_model, traj.at(i), schedule.timesteps[i], cond)
        for name, m in rec.maps.items():
            torch.testing.assert_close(ref[i][name], m)

    free = edit_pass(tiny_model, schedule, x_T, cond_edit, cond, ref, 5.0, 0.0, measure=True)
    guided = edit_pass(tiny_model, schedule, x_T, cond_edit, cond, ref, 5.0, 50.0)
    lf = torch.stack(free.xa_losses)
    lg = torch.stack(guided.xa_losses)
    assert torch.allclose(lf[0], lg[0])  # same x_T: same loss before the first guidance step
    assert (lg[1:] < lf[1:]).all()
    assert lg[1:].sum() < 0.99 * lf[1:].sum()
    assert not torch.allclose(free.latent, guided.latent)

    # one guidance step at the default size lowers the loss at that step
    def loss_at(x):
        hook = CrossAttentionLoss(ref[0])
        with torch.no_grad(), attention_hooks(tiny_model.unet, hook):
            unet_forward(tiny_model, x, schedule.timesteps[0], cond_edit)
        return hook.loss

    step = edit_pass(tiny_model, DDIMSchedule(tiny_model.scheduler_config, 5), x_T, cond_edit, cond, ref,
                     5.0, 0.1)
    assert step.xa_losses[0].item() == pytest.approx(loss_at(x_T).item(), rel=1e-5)
    xv = x_T.clone().requires_grad_(True)
    hook = CrossAttentionLoss(ref[0])
    with attention_hooks(tiny_model.unet, hook):
        unet_forward(tiny_model, xv, schedule.timesteps[0], cond_edit)
    (g,) = torch.autograd.grad(hook.loss, xv)
    assert loss_at(x_T - 0.1 * g) < loss_at(x_T)
    # the move it reports is that step's size against the latent's (what tells models apart)
    assert len(step.xa_moves) == 5 and free.xa_moves == []
    assert step.xa_moves[0].item() == pytest.approx((0.1 * g).norm().item() / x_T.norm().item(), rel=1e-4)


# ---- the method end to end ------------------------------------------------------------------------

def test_runs_end_to_end_with_mask_and_keeps_outside_pixels(engine_with_tiny, tiny_model):
    img = _image()
    mask = np.zeros(img.shape[:2], np.float32)
    mask[8:30, 12:36] = 1
    events = []
    res = engine_with_tiny.run(EditRequest(P2PZ, img, {"source_word": "cat", "target_word": "dog",
                                                       "source_prompt": "a cat on a rug", "steps": 4},
                                           mask=mask), events=events.append)
    out = np.asarray(res.image)
    assert out.shape == img.shape
    outside = feathered(mask) == 0
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out[mask > 0], img[mask > 0])
    for stage in ("invert", "reference", "edit"):
        steps = [e for e in events if e.stage == stage and e.step > 0]
        assert len(steps) == 4 and all(e.preview is not None for e in steps)
    assert res.info["caption"] == "a cat on a rug" and len(res.info["xa_loss"]) == 4
    # inversion (4) + reference (4) + per edit step one guidance pass and one batched CFG pass
    assert res.passes["unet"] == 4 + 4 + 2 * 4 and res.passes["unet_grad"] == 4


def test_edit_multiplier_scales_the_direction(engine_with_tiny):
    img = _image(seed=2)
    params = {"source_word": "cat", "target_word": "dog", "source_prompt": "a cat", "steps": 3, "reg_steps": 0}
    none = engine_with_tiny.run(EditRequest(P2PZ, img, {**params, "edit_multiplier": 0.0}))
    once = engine_with_tiny.run(EditRequest(P2PZ, img, params))
    twice = engine_with_tiny.run(EditRequest(P2PZ, img, {**params, "edit_multiplier": 2.0}))
    # at x_T the edit pass sees the trajectory's own latent: without a direction its maps are the
    # reference's exactly; the loss there grows with the multiplier
    assert none.info["xa_loss"][0] == 0.0
    assert 0 < once.info["xa_loss"][0] < twice.info["xa_loss"][0]


def test_second_edit_reuses_direction_inversion_and_reference(engine_with_tiny, tiny_model):
    params = {"source_word": "lion", "target_word": "tiger", "source_prompt": "a lion", "steps": 3}
    img = _image(seed=1)
    first = engine_with_tiny.run(EditRequest(P2PZ, img, params))
    with EncoderCalls(tiny_model) as enc:
        second = engine_with_tiny.run(EditRequest(P2PZ, img, params))
    assert enc.calls == 0  # neither the direction nor the caption is re-encoded
    assert second.passes["unet"] == 2 * 3  # guidance + CFG only: inversion and reference reused
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    # a new word pair on the same image still reuses the inversion and the reference maps
    with EncoderCalls(tiny_model) as enc:
        third = engine_with_tiny.run(EditRequest(P2PZ, img, {**params, "target_word": "bear"}))
    assert enc.rows == len(ed.load_templates())  # only the new word's sentences
    assert third.passes["unet"] == 2 * 3


def test_missing_caption_without_captioner_is_a_clear_error(engine_with_tiny, monkeypatch):
    import core.aux_models as aux

    def unavailable(kind, base, source=None, needed_by=""):
        raise ModelUnavailable(f"{needed_by} needs BLIP captioner, which is not available: offline")

    monkeypatch.setattr(aux, "load_aux", unavailable)
    with pytest.raises(ModelUnavailable, match="type a source prompt"):
        engine_with_tiny.run(EditRequest(P2PZ, _image(), {"source_word": "cat", "target_word": "dog",
                                                          "steps": 3}))


def _tiny_blip(tmp_path, favour: str | None):
    """A tiny random BLIP captioner built in-process; `favour` biases its decoder towards one word."""
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "cat", "photo", "of", "rug"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer(str(tmp_path / "vocab.txt"), bos_token="[DEC]")
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=5, pad_token_id=0,
                         sep_token_id=3, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=16), projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(cfg).eval()
    if favour is not None:
        with torch.no_grad():
            model.text_decoder.cls.predictions.bias[words.index(favour)] += 100.0
    return model, proc


def test_empty_source_prompt_is_captioned_with_blip(engine_with_tiny, monkeypatch, tmp_path):
    import core.aux_models as aux

    model, proc = _tiny_blip(tmp_path, favour="cat")
    calls = []
    monkeypatch.setattr(model, "generate", lambda *a, _g=model.generate, **k: calls.append(1) or _g(*a, **k))
    monkeypatch.setattr(aux, "load_aux", lambda kind, base, source=None, needed_by="":
                        aux.AuxModel(kind, "tiny", model, proc))
    params = {"source_word": "cat", "target_word": "dog", "steps": 2}
    res = engine_with_tiny.run(EditRequest(P2PZ, _image(seed=2), params))
    assert res.info["caption"].split()[:2] == ["cat", "cat"]
    engine_with_tiny.run(EditRequest(P2PZ, _image(seed=2), params))
    assert len(calls) == 1  # the caption is cached per image

    silent, proc = _tiny_blip(tmp_path, favour=None)  # says nothing: ask the user for a caption
    monkeypatch.setattr(aux, "load_aux", lambda kind, base, source=None, needed_by="":
                        aux.AuxModel(kind, "tiny", silent, proc))
    with pytest.raises(InvalidInput, match="source prompt"):
        engine_with_tiny.run(EditRequest(P2PZ, _image(seed=3), params))


def test_committed_sentence_banks_match_their_generator(capsys):
    from tools import make_sentence_bank

    assert make_sentence_bank.main(["--check"]) == 0, capsys.readouterr().out
