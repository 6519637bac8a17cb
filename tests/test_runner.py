"""The Qt-free job runner: events tagged by job, supersede by key, cancel, shutdown; and the frozen,
serialisable request and result it carries."""
import dataclasses
import threading

import numpy as np
import pytest

from core import EditRequest, InvalidInput, ModelSpec
from core.runner import (DeviceStatus, Failed, Finished, JobCancelled, LocalRunner, ProgressEvent, Queued,
                         Started, Supersede)


def _img(seed=0, w=48, h=32):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


class Recorder:
    def __init__(self):
        self.events = []
        self.threads = set()  # threads that emitted anything but Queued (which comes from submit's caller)
        self.lock = threading.Lock()

    def __call__(self, ev):
        with self.lock:
            self.events.append(ev)
            if not isinstance(ev, Queued):
                self.threads.add(threading.get_ident())

    def of(self, job, kind=None):
        with self.lock:
            return [e for e in self.events if e.job is job and (kind is None or isinstance(e, kind))]


@pytest.fixture()
def runner(engine_with_tiny):
    r = LocalRunner(engine_with_tiny)
    yield r
    assert r.shutdown(wait=True, timeout=60)


def test_events_are_tagged_by_job_and_come_from_the_runner_thread(runner):
    rec = Recorder()
    runner.subscribe(rec)
    job = runner.submit(EditRequest("reconstruct", _img(), {"steps": 3}, origin={"document": "d1"}))
    assert runner.wait_idle(60)
    kinds = [type(e) for e in rec.of(job) if not isinstance(e, DeviceStatus)]
    assert kinds[0] is Queued and kinds[1] is Started and kinds[-1] is Finished
    assert ProgressEvent in kinds
    result = rec.of(job, Finished)[0].result
    assert result.origin == {"document": "d1"} and result.image.size == (48, 32)
    assert threading.get_ident() not in rec.threads  # every event came from the runner's thread
    assert rec.of(job, DeviceStatus), "device memory is reported from the runner's thread"


def test_run_waits_and_returns_the_terminal_event(runner):
    seen = []
    end = runner.run(EditRequest("reconstruct", _img(), {"steps": 2}), seen.append)
    assert isinstance(end, Finished) and isinstance(seen[-1], Finished)
    end = runner.run(EditRequest("drag", _img(), {"points": [(500, 5, 10, 10)], "lora_steps": 0}))
    assert isinstance(end, Failed) and end.kind == "invalid input" and end.exit_code == 2
    assert isinstance(end.error, InvalidInput)


def test_queued_job_with_the_same_key_is_superseded(runner):
    rec = Recorder()
    runner.subscribe(rec)
    running = threading.Event()
    runner.subscribe(lambda ev: running.set() if isinstance(ev, Started) else None)
    first = runner.submit(EditRequest("reconstruct", _img(1), {"steps": 20}), key="k")
    assert running.wait(30)  # the running job is never superseded by QUEUED
    queued = runner.submit(EditRequest("reconstruct", _img(2), {"steps": 2}), key="k")
    newer = runner.submit(EditRequest("reconstruct", _img(3), {"steps": 2}), key="k")
    assert runner.wait_idle(60)
    assert rec.of(queued, JobCancelled)[0].superseded
    assert not rec.of(queued, Started)
    assert rec.of(first, Finished) and rec.of(newer, Finished)


def test_supersede_running_cancels_the_running_job_at_its_next_step(runner):
    rec = Recorder()
    runner.subscribe(rec)
    started = threading.Event()
    runner.subscribe(lambda ev: started.set() if isinstance(ev, ProgressEvent) else None)
    first = runner.submit(EditRequest("reconstruct", _img(1), {"steps": 200}), key="live")
    assert started.wait(30)
    second = runner.submit(EditRequest("reconstruct", _img(2), {"steps": 2}), key="live",
                           supersede=Supersede.RUNNING)
    assert runner.wait_idle(60)
    assert rec.of(first, JobCancelled)[0].superseded and not rec.of(first, Finished)
    assert rec.of(second, Finished)


def test_cancel_everything_and_a_listener_bug_never_stops_the_runner(runner):
    def broken(ev):
        raise RuntimeError("front-end bug")

    runner.subscribe(broken)
    rec = Recorder()
    runner.subscribe(rec)
    a = runner.submit(EditRequest("reconstruct", _img(1), {"steps": 200}))
    b = runner.submit(EditRequest("reconstruct", _img(2), {"steps": 2}))
    runner.cancel()
    assert runner.wait_idle(60)
    assert rec.of(a, JobCancelled) and rec.of(b, JobCancelled)
    assert isinstance(runner.run(EditRequest("reconstruct", _img(), {"steps": 2})), Finished)


def test_shutdown_without_waiting_lets_the_thread_finish_on_its_own(engine_with_tiny):
    r = LocalRunner(engine_with_tiny)
    r.submit(EditRequest("reconstruct", _img(), {"steps": 200}))
    r.shutdown(wait=False)
    assert r.shutdown(wait=True, timeout=60)
    with pytest.raises(RuntimeError):
        r.submit(EditRequest("reconstruct", _img(), {"steps": 2}))


def test_request_is_frozen_validated_and_holds_pixels(tmp_path):
    from PIL import Image

    path = tmp_path / "in.png"
    Image.fromarray(_img()).save(path)
    req = EditRequest("pnp", str(path), {"prompt": "a cat"}, mask=np.ones((32, 48), np.float32),
                      origin={"document": "x", "layer": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.method = "drag"
    with pytest.raises(TypeError):
        req.origin["layer"] = 4
    with pytest.raises(ValueError):
        req.image.rgb[0, 0, 0] = 1  # read-only pixels: a request can be shared between threads
    path.unlink()  # the request holds the pixels, not the path
    assert req.image.size == (48, 32) and req.params.prompt == "a cat"
    with pytest.raises(InvalidInput):
        EditRequest("pnp", _img(), {"prompt": ""})  # required field: refused before any queue
    with pytest.raises(InvalidInput):
        EditRequest("nope", _img(), {})


def test_request_round_trips_through_json_with_pixels_and_hashes():
    import json

    style = _img(5, 20, 20)
    req = EditRequest("diffuseit", _img(), {"style_image": "Layer: Style"}, mask=np.full((32, 48), 0.5, np.float32),
                      model=ModelSpec("demo", device="cpu"), inputs={"style_image": style}, origin={"doc": "a"})
    text = json.dumps(req.to_dict())
    back = EditRequest.from_dict(json.loads(text))
    assert back.content_key() == req.content_key()
    assert np.array_equal(back.image.rgb, req.image.rgb)
    assert np.allclose(back.mask, req.mask, atol=1e-4)
    assert np.array_equal(back.inputs["style_image"].rgb, style) and back.origin == {"doc": "a"}
    light = req.to_dict(pixels=False)
    assert "png" not in light["image"] and light["image"]["sha256"] == req.image.content_hash()
    with pytest.raises(InvalidInput):
        EditRequest.from_dict(light)  # hashes alone cannot rebuild the pixels
