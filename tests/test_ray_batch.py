"""The same batch on a local Ray cluster (2 CPU actors, the demo model): outputs bit-identical to the
local batch, the model loaded once per actor, a corrupt image a failed row; and RayRunner behind the
Runner protocol (events, failures, cancel) for single requests."""
import threading

import numpy as np
import pytest
from PIL import Image

from core import EditRequest, ModelSpec
from core.batch import BatchSpec, LocalBatch, plan, run_batch
from core.runner import Failed, Finished, JobCancelled, LocalRunner, ProgressEvent


def _noise(seed, h, w, channels=3):
    return (np.random.RandomState(seed).rand(h, w, channels) * 255).astype(np.uint8)


def test_ray_batch_matches_the_local_batch(ray_cluster, tmp_path):
    from core.ray_runner import RayRunner

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_noise(0, 48, 64)).save(src / "a.png")
    Image.fromarray(_noise(1, 64, 40, 4), "RGBA").save(src / "b.png")
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    results = {}
    for name, backend in (("local", LocalBatch()), ("ray", RayRunner(workers=2))):
        spec = BatchSpec("reconstruct", src, tmp_path / name, {"steps": 2})
        summary = run_batch(spec, plan(spec), backend)
        if name == "ray":
            backend.shutdown()
        results[name] = {r["image"]: r for r in summary.rows}
        assert (summary.ok, summary.failed) == (2, 1), summary.rows

    ray_rows = results["ray"]
    assert ray_rows["bad.jpg"]["status"] == "failed" and ray_rows["bad.jpg"]["error_kind"] == "invalid input"
    workers = {r["worker"] for r in ray_rows.values() if r["status"] == "ok"}
    assert 1 <= len(workers) <= 2 and {r["model_loads"] for r in ray_rows.values() if r["status"] == "ok"} == {1}
    assert not workers & {r["worker"] for r in results["local"].values()}  # they really ran elsewhere
    for image in ("a.png", "b.png"):
        out = ray_rows[image]["output"]
        assert (tmp_path / "ray" / out).read_bytes() == (tmp_path / "local" / out).read_bytes(), image
        assert ray_rows[image]["seed"] == results["local"][image]["seed"]


def test_ray_runner_speaks_the_runner_protocol(ray_cluster, tmp_path):
    from core.ray_runner import RayRunner
    from tests.tiny import save_tiny_model

    model = ModelSpec(str(save_tiny_model(tmp_path / "tiny")))  # a model folder the actor loads by path
    image = _noise(3, 32, 48)
    local = LocalRunner()
    expected = local.run(EditRequest("reconstruct", image, {"steps": 3}, model=model))
    local.shutdown()

    runner = RayRunner()
    try:
        seen = []
        end = runner.run(EditRequest("reconstruct", image, {"steps": 3}, model=model, origin={"doc": 1}),
                         seen.append)
        assert isinstance(end, Finished), end
        assert np.array_equal(np.asarray(end.result.image), np.asarray(expected.result.image))
        assert end.result.origin == {"doc": 1} and any(isinstance(e, ProgressEvent) for e in seen)

        end = runner.run(EditRequest("drag", image, {"points": [(500, 5, 10, 10)], "lora_steps": 0}, model=model))
        assert isinstance(end, Failed) and end.kind == "invalid input" and end.exit_code == 2

        started, ends = threading.Event(), []
        runner.subscribe(lambda ev: started.set() if isinstance(ev, ProgressEvent) else None)
        runner.subscribe(lambda ev: ends.append(ev) if isinstance(ev, (Finished, JobCancelled)) else None)
        job = runner.submit(EditRequest("reconstruct", image, {"steps": 1000}, model=model))
        assert started.wait(60)
        # stops the actor's engine at its next step: the job ends with the actor's own "cancelled"
        # message (a ray.cancel of the stream left the actor running all 2000 passes, a minute here)
        runner.cancel(job)
        assert runner.wait_idle(60)
        assert [type(e) for e in ends if e.job is job] == [JobCancelled]
        later = runner.run(EditRequest("reconstruct", image, {"steps": 2}, model=model))
        assert isinstance(later, Finished)  # the actor is still usable after a cancel
    finally:
        assert runner.shutdown(wait=True, timeout=60)
