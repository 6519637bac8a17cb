"""Loss scaling for gradients through an fp16 network (core/loss_scaling.py), and that every
optimisation loop through the UNet uses it."""
from __future__ import annotations

import copy

import pytest
import torch

from core.loss_scaling import LossScaler, needs_scaling


@pytest.fixture(scope="module")
def half_unet(tiny_model):
    return copy.deepcopy(tiny_model.unet).half()


def _grad_through(unet, scaler, factor: float, dtype=torch.float16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g).requires_grad_(True)
    emb = torch.randn(1, 77, 32, generator=g)
    out = unet(x.to(dtype), torch.tensor(500), encoder_hidden_states=emb.to(dtype)).sample.float()
    loss = factor * (out ** 2).mean()
    if scaler is None:
        return torch.autograd.grad(loss, x)[0]
    return scaler.grad(loss, [x])[0]


def test_small_gradients_underflow_in_fp16_unless_the_loss_is_scaled(tiny_model, half_unet):
    factor = 1e-4  # a loss this small (pix2pix-zero's attention loss, a late training step) is common
    reference = _grad_through(tiny_model.unet, None, factor, torch.float32)
    plain = _grad_through(half_unet, None, factor)
    scaled = _grad_through(half_unet, LossScaler(True), factor)
    err = lambda g: float((g - reference).norm() / reference.norm())  # noqa: E731
    assert float((plain == 0).float().mean()) > 0.2          # most of it flushed to zero
    assert err(plain) > 0.3
    assert err(scaled) < 0.05                                 # fp16 rounding only


def test_an_overflowing_scale_is_halved_and_the_step_redone(half_unet):
    scaler = LossScaler(True, init_scale=2.0 ** 40)  # far too high: the backward overflows at first
    g = _grad_through(half_unet, scaler, 10.0)
    assert bool(torch.isfinite(g).all()) and scaler.overflows > 0 and scaler.scale < 2.0 ** 40
    assert float(g.abs().sum()) > 0


def test_only_fp16_is_scaled():
    assert needs_scaling(torch.float16)
    assert not needs_scaling(torch.float32) and not needs_scaling(torch.bfloat16)
    scaler = LossScaler.for_dtype(torch.float32)
    w = torch.ones(3, requires_grad=True)
    scaler.backward((w * 2).sum(), [w])
    assert w.grad.tolist() == [2.0, 2.0, 2.0] and scaler.scale == 1.0


def test_backward_leaves_unused_parameters_without_a_gradient():
    scaler = LossScaler(True)
    used, unused = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    scaler.backward((used * 3).sum(), [used, unused])
    assert used.grad.tolist() == [3.0, 3.0] and unused.grad is None


class _Recorder:
    calls: list = []


@pytest.fixture()
def recorded(monkeypatch):
    """Every LossScaler backward/grad call, by the loop that made it."""
    import inspect

    _Recorder.calls = []
    real_backward, real_grad = LossScaler.backward, LossScaler.grad

    def caller():
        return inspect.stack()[2].function

    def backward(self, loss, params):
        _Recorder.calls.append(("backward", caller()))
        return real_backward(self, loss, params)

    def grad(self, loss, inputs):
        _Recorder.calls.append(("grad", caller()))
        return real_grad(self, loss, inputs)

    monkeypatch.setattr(LossScaler, "backward", backward)
    monkeypatch.setattr(LossScaler, "grad", grad)
    return _Recorder.calls


def test_every_loop_through_the_unet_scales_its_loss(engine_with_tiny, recorded, tmp_path):
    import numpy as np

    from core.engine import EditRequest
    from core.methods.style_diffusion import method as sd
    from core.sampling import ddim_invert
    from core.schedule import DDIMSchedule

    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    engine_with_tiny.run(EditRequest("drag", img, dict(points=[[8, 8, 20, 8]], lora_steps=2, drag_steps=2, steps=6)))
    engine_with_tiny.run(EditRequest("pix2pix-zero", img, dict(source_word="cat", target_word="dog",
                                                               source_prompt="a cat", steps=2, reg_steps=0)))
    model = engine_with_tiny.models._model
    schedule = DDIMSchedule(model.scheduler_config, 2)
    cond, uncond = model.encode_text("a cat"), model.encode_text("")
    with torch.no_grad():
        traj = ddim_invert(model, schedule, torch.randn(1, 4, 16, 16), cond)
    sd.train_value_mappers(model, schedule, traj, torch.randn(1, 5, 32), cond, uncond, 7.5, 2, 1e-2)
    loops = {name for _, name in recorded}
    assert {"train_identity_lora", "drag_latent", "guide", "train_value_mappers"} <= loops
