"""DDIM inversion keeps a trajectory that regenerates the input latent."""
import pytest
import torch

from core.sampling import ddim_invert, denoise
from core.schedule import DDIMSchedule
from core.unet_calls import counters, unet_forward
from tests.tiny import build_tiny_model


@pytest.fixture(scope="module")
def smooth_model(tmp_path_factory):
    # A random UNet's noise prediction is rough in x and t; a trained one is smooth, which is what
    # makes DDIM inversion work. Shrinking the output layer gives a random model that behaves so.
    m = build_tiny_model(tmp_path_factory.mktemp("smooth"), seed=1)
    with torch.no_grad():
        m.unet.conv_out.weight.mul_(0.1)
        m.unet.conv_out.bias.mul_(0.1)
    return m


def _latent(model):
    torch.manual_seed(0)
    with torch.no_grad():
        lat = model.encode_image(torch.rand(1, 3, 32, 32) * 2 - 1)
    return lat / lat.std()


def _round_trip_error(model, steps):
    lat = _latent(model)
    cond = model.encode_text("a red circle")
    sched = DDIMSchedule(model.scheduler_config, steps)
    traj = ddim_invert(model, sched, lat, cond)
    out = denoise(model, sched, traj.noisiest, lambda x, i, t: unet_forward(model, x, t, cond))
    return (out - lat).abs().mean().item() / lat.abs().mean().item(), traj


def test_round_trip_lands_near_input_and_improves_with_steps(smooth_model):
    err10, _ = _round_trip_error(smooth_model, 10)
    err50, traj = _round_trip_error(smooth_model, 50)
    assert err50 < 0.05, err50
    assert err50 < err10 * 0.7, (err10, err50)
    # The trajectory is complete and ordered: clean at the end, noisiest first.
    assert traj.latents.shape[0] == 51
    assert torch.equal(traj.clean, _latent(smooth_model))


def test_trajectory_steps_match_regeneration(smooth_model):
    """Denoising from traj.at(i) for one step lands near traj.at(i+1): methods read the source
    branch at step t from the trajectory instead of re-running it."""
    lat = _latent(smooth_model)
    cond = smooth_model.encode_text("")
    sched = DDIMSchedule(smooth_model.scheduler_config, 20)
    traj = ddim_invert(smooth_model, sched, lat, cond)
    for i in (0, 10, 19):
        with torch.no_grad():
            out = unet_forward(smooth_model, traj.at(i), sched.timesteps[i], cond)
        nxt = sched.step(traj.at(i), out, i)
        ref = traj.latents[i + 1: i + 2]
        assert (nxt - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


def test_partial_inversion_stops_at_strength(smooth_model):
    lat = _latent(smooth_model)
    cond = smooth_model.encode_text("")
    sched = DDIMSchedule(smooth_model.scheduler_config, 50)
    start = sched.index_for_strength(0.7)
    assert start == 15 and sched.timesteps[start] == 681
    before = counters(smooth_model)["unet"]
    traj = ddim_invert(smooth_model, sched, lat, cond, stop_index=start)
    assert counters(smooth_model)["unet"] - before == 35
    assert traj.start == 15
    with pytest.raises(IndexError):
        traj.at(3)


def test_v_prediction_round_trip(tmp_path):
    m = build_tiny_model(tmp_path, seed=2)
    m.scheduler_config = dict(m.scheduler_config, prediction_type="v_prediction")
    with torch.no_grad():
        m.unet.conv_out.weight.mul_(0.1)
        m.unet.conv_out.bias.mul_(0.1)
    sched = DDIMSchedule(m.scheduler_config, 4)
    x0 = torch.randn(1, 4, 8, 8)
    eps = torch.randn(1, 4, 8, 8)
    t = sched.timesteps[1]
    a = sched.alpha(t)
    xt = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
    v = a ** 0.5 * eps - (1 - a) ** 0.5 * x0
    rx0, reps = sched.x0_and_eps(xt, v, t)
    assert torch.allclose(rx0, x0, atol=1e-5) and torch.allclose(reps, eps, atol=1e-5)
