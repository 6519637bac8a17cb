"""The attention layer records and replaces what it claims, and is exact when idle."""
import torch

from core.attention import AttentionHook, AttentionRecorder, attention_hooks, attention_layers
from core.unet_calls import unet_forward
from core.unet_layout import corresponding_index, decoder_layers, up_block_for_sd1
from tests.tiny import build_tiny_model


def _inputs(model):
    torch.manual_seed(0)
    return torch.randn(2, 4, 16, 16), model.encode_text(["a cat", "a dog"])


def test_idle_processors_match_diffusers_default(tmp_path):
    model = build_tiny_model(tmp_path)
    x, emb = _inputs(model)
    with torch.no_grad():
        ref = unet_forward(model, x, 500, emb)  # diffusers' own processors
        with attention_hooks(model.unet):
            ours = unet_forward(model, x, 500, emb)
    assert torch.allclose(ref, ours, atol=1e-5)


def test_recorder_sees_every_layer_with_heads(tiny_model):
    x, emb = _inputs(tiny_model)
    rec = AttentionRecorder(what=("q", "k", "v", "probs"))
    with torch.no_grad(), attention_hooks(tiny_model.unet, rec):
        unet_forward(tiny_model, x, 500, emb)
    names = {layer.name for layer in attention_layers(tiny_model.unet)}
    assert set(rec.records) == names
    for name, calls in rec.records.items():
        r = calls[0]
        assert r["q"].ndim == 4 and r["q"].shape[0] == 2
        p = r["probs"]
        assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-4)
        if name.endswith("attn2"):
            assert r["k"].shape[2] == 77  # cross-attention keys come from the 77 text tokens


def test_probs_path_equals_sdpa_path(tiny_model):
    x, emb = _inputs(tiny_model)
    with torch.no_grad():
        with attention_hooks(tiny_model.unet):
            fast = unet_forward(tiny_model, x, 300, emb)
        with attention_hooks(tiny_model.unet, AttentionRecorder(what=("probs",))):
            slow = unet_forward(tiny_model, x, 300, emb)
    assert torch.allclose(fast, slow, atol=1e-4)


class CopyBranchKV(AttentionHook):
    """Batch item 1 attends with item 0's keys and values in self-attention."""

    def applies(self, call):
        return not call.layer.is_cross

    def qkv(self, call, q, k, v):
        k = torch.cat([k[:1], k[:1]])
        v = torch.cat([v[:1], v[:1]])
        return q, k, v


def test_replacing_kv_changes_only_the_target_branch(tiny_model):
    x, emb = _inputs(tiny_model)
    with torch.no_grad():
        plain = unet_forward(tiny_model, x, 500, emb)
        rec = AttentionRecorder(select=lambda layer: not layer.is_cross, what=("k",))
        with attention_hooks(tiny_model.unet, CopyBranchKV(), rec):
            mixed = unet_forward(tiny_model, x, 500, emb)
    assert torch.allclose(mixed[0], plain[0], atol=1e-5)  # the source branch is untouched
    assert not torch.allclose(mixed[1], plain[1], atol=1e-3)
    # Hooks are removed afterwards.
    with torch.no_grad():
        again = unet_forward(tiny_model, x, 500, emb)
    assert torch.allclose(again, plain, atol=1e-6)


def test_decoder_layout_by_position(tiny_model):
    layers = decoder_layers(tiny_model.unet)
    assert len(layers) == 6  # 3 up blocks x 2 resnets
    assert layers[0].attention_prefix is None  # lowest resolution: no attention, like SD 1.x
    assert layers[-1].attention_prefix == "up_blocks.2.attentions.1"
    assert corresponding_index(4, 12) == 4
    assert corresponding_index(4, 6) == 2 and corresponding_index(11, 6) == 5
    assert up_block_for_sd1(tiny_model.unet, 2) == 1 and up_block_for_sd1(tiny_model.unet, 3) == 2
