"""engine.run end to end on the tiny model: events, previews, cancel, caching, determinism."""
import numpy as np
import pytest

from core import Cancelled, EditRequest, InvalidInput
from core.events import CancelToken
from core.unet_calls import counters


def _img(w=48, h=32, seed=0):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def test_reconstruct_streams_previews_and_keeps_size(engine_with_tiny):
    events = []
    res = engine_with_tiny.run(EditRequest("reconstruct", _img(), {"steps": 6}), events=events.append)
    assert res.image.size == (48, 32)
    stages = [e.stage for e in events]
    assert "invert" in stages and "regenerate" in stages
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) >= 12  # one per step of each stage
    for p in previews:
        assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3
        # Latent resolution of the picture on the 32x24 working canvas, padding cropped off.
        assert p.shape[1] == 16 and p.shape[0] in (10, 11)
    assert res.passes["unet"] == 12 and res.passes["vae_decode"] == 1
    assert set(res.stages) >= {"invert", "regenerate"}


def test_second_edit_reuses_inversion(engine_with_tiny):
    img = _img(seed=3)
    engine_with_tiny.run(EditRequest("reconstruct", img, {"steps": 5}))
    res = engine_with_tiny.run(EditRequest("reconstruct", img, {"steps": 5}))
    assert res.passes["unet"] == 5  # regeneration only
    assert "vae_encode" not in res.passes


def test_same_seed_same_bytes(engine_with_tiny):
    a = engine_with_tiny.run(EditRequest("reconstruct", _img(seed=4), {"steps": 4, "seed": 7}))
    engine_with_tiny.clear_caches()
    b = engine_with_tiny.run(EditRequest("reconstruct", _img(seed=4), {"steps": 4, "seed": 7}))
    assert a.image.tobytes() == b.image.tobytes()


def test_cancel_mid_run_leaves_no_cache_entry(engine_with_tiny, tiny_model):
    token = CancelToken()
    seen = []

    def sink(ev):
        seen.append(ev)
        if ev.stage == "invert" and ev.step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        engine_with_tiny.run(EditRequest("reconstruct", _img(seed=5), {"steps": 8}), sink, token)
    assert max(e.step for e in seen if e.stage == "invert") == 2  # stopped at the next check
    assert len(engine_with_tiny.cache("inversion")) == 0
    # A later run is complete and unaffected.
    before = counters(tiny_model)["unet"]
    engine_with_tiny.run(EditRequest("reconstruct", _img(seed=5), {"steps": 8}))
    assert counters(tiny_model)["unet"] - before == 16


def test_mask_keeps_outside_pixels(engine_with_tiny):
    img = _img(64, 40, 6)
    mask = np.zeros((40, 64), np.float32)
    mask[5:20, 10:30] = 1
    res = engine_with_tiny.run(EditRequest("reconstruct", img, {"steps": 3}, mask=mask))
    out = np.asarray(res.image)
    assert np.array_equal(out[30:], img[30:]) and np.array_equal(out[:, 40:], img[:, 40:])
    assert not np.array_equal(out[8:18, 12:28], img[8:18, 12:28])


def test_bad_params_and_methods(engine_with_tiny):
    with pytest.raises(InvalidInput, match="Unknown method"):
        engine_with_tiny.run(EditRequest("nope", _img()))
    with pytest.raises(InvalidInput, match="out of range"):
        engine_with_tiny.run(EditRequest("reconstruct", _img(), {"steps": 0}))
    with pytest.raises(InvalidInput, match="Unknown parameter"):
        engine_with_tiny.run(EditRequest("reconstruct", _img(), {"stepz": 3}))
