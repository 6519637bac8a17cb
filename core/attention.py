"""An attention-processor layer that lets methods record and replace what flows through the UNet's
attention: self-attention q/k/v, cross-attention maps and K/V, per layer and per call.

One `ControlledAttnProcessor` is installed on every attention module of a UNet (once, then kept).
With no hook active it computes exactly what diffusers' AttnProcessor2_0 does (SDPA). Methods
activate hooks for the duration of a call with `attention_hooks(model, hook, ...)`. A hook sees
q, k, v split into heads ([batch, heads, tokens, head_dim]) and, only if it asks, the attention
probabilities, so the fast path stays fast.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

_NAME = re.compile(r"(down_blocks|up_blocks|mid_block)(?:\.(\d+))?\.attentions\.(\d+)\.transformer_blocks\.(\d+)\.(attn\d)")


@dataclass(frozen=True)
class LayerInfo:
    """Where an attention layer sits. `place` is down / mid / up; `block` its index among the
    down or up blocks; `index` which attention within the block; `kind` attn1 (self) / attn2 (cross)."""

    name: str
    place: str
    block: int
    index: int
    kind: str

    @property
    def is_cross(self) -> bool:
        return self.kind == "attn2"


def parse_layer_name(name: str) -> LayerInfo:
    m = _NAME.search(name)
    if not m:
        return LayerInfo(name, "other", 0, 0, "attn1")
    group, block, index, _tb, kind = m.groups()
    place = {"down_blocks": "down", "up_blocks": "up", "mid_block": "mid"}[group]
    return LayerInfo(name.removesuffix(".processor"), place, int(block or 0), int(index), kind)


@dataclass
class AttnCall:
    """One call of one attention layer, handed to hooks."""

    layer: LayerInfo
    attn: torch.nn.Module
    hidden_states: torch.Tensor           # the layer's query-side input [B, N, C]
    encoder_hidden_states: Optional[torch.Tensor]  # text embeddings for cross-attention, else None

    @property
    def tokens(self) -> int:
        return self.hidden_states.shape[1]

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return x.view(b, -1, self.attn.heads, x.shape[-1] // self.attn.heads).transpose(1, 2)


class AttentionHook:
    """Override what you need. Methods return their (possibly replaced) inputs."""

    def applies(self, call: AttnCall) -> bool:
        return True

    def qkv(self, call: AttnCall, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        return q, k, v

    def wants_probs(self, call: AttnCall) -> bool:
        return False

    def probs(self, call: AttnCall, p: torch.Tensor) -> torch.Tensor:
        return p


class AttentionControl:
    """The shared state of all processors of one UNet: the stack of active hooks."""

    def __init__(self) -> None:
        self.hooks: list[AttentionHook] = []


class ControlledAttnProcessor:
    def __init__(self, name: str, control: AttentionControl):
        self.layer = parse_layer_name(name)
        self.control = control

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = (hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        call = AttnCall(self.layer, attn, hidden_states, context if is_cross else None)
        q = call.split_heads(attn.to_q(hidden_states))
        k = call.split_heads(attn.to_k(context))
        v = call.split_heads(attn.to_v(context))
        if getattr(attn, "norm_q", None) is not None:
            q = attn.norm_q(q)
        if getattr(attn, "norm_k", None) is not None:
            k = attn.norm_k(k)

        hooks = [hk for hk in self.control.hooks if hk.applies(call)]
        for hk in hooks:
            q, k, v = hk.qkv(call, q, k, v)
        prob_hooks = [hk for hk in hooks if hk.wants_probs(call)]
        if prob_hooks:
            scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scale
            if attention_mask is not None:
                scores = scores + attention_mask.float()
            p = scores.softmax(dim=-1)
            for hk in prob_hooks:
                p = hk.probs(call, p)
            out = torch.matmul(p.to(v.dtype), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0,
                                                 is_causal=False, scale=attn.scale)
        out = out.transpose(1, 2).reshape(out.shape[0], -1, attn.heads * out.shape[-1]).to(q.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def attention_control(unet: torch.nn.Module) -> AttentionControl:
    """Install the controlled processors on `unet` once and return their shared control."""
    control = getattr(unet, "_malleable_attention_control", None)
    if control is None:
        control = AttentionControl()
        unet.set_attn_processor({name: ControlledAttnProcessor(name, control)
                                 for name in unet.attn_processors})
        unet._malleable_attention_control = control
    return control


@contextlib.contextmanager
def attention_hooks(unet: torch.nn.Module, *hooks: AttentionHook) -> Iterator[AttentionControl]:
    control = attention_control(unet)
    control.hooks.extend(hooks)
    try:
        yield control
    finally:
        for hk in hooks:
            control.hooks.remove(hk)


def attention_layers(unet: torch.nn.Module) -> list[LayerInfo]:
    return [parse_layer_name(n) for n in unet.attn_processors]


class AttentionRecorder(AttentionHook):
    """Records q/k/v and/or attention maps of the selected layers (for tests and simple methods).

    `select(layer) -> bool` picks layers; `what` is a subset of {"q", "k", "v", "probs"}."""

    def __init__(self, select=lambda layer: True, what=("q", "k", "v"), detach: bool = True):
        self.select = select
        self.what = set(what)
        self.detach = detach
        self.records: dict[str, list[dict]] = {}

    def applies(self, call: AttnCall) -> bool:
        return self.select(call.layer)

    def _keep(self, x):
        return x.detach().clone() if self.detach else x

    def qkv(self, call, q, k, v):
        rec = {name: self._keep(t) for name, t in (("q", q), ("k", k), ("v", v)) if name in self.what}
        self.records.setdefault(call.layer.name, []).append(rec)
        return q, k, v

    def wants_probs(self, call):
        return "probs" in self.what

    def probs(self, call, p):
        self.records[call.layer.name][-1]["probs"] = self._keep(p)
        return p
