"""malleable-edit batch on this machine: mixed pictures with a corrupt one, resume, sidecars and jobs
files, outputs identical to single edits with the derived seeds, usage errors before anything runs,
and the manifest surviving a torn row."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.batch import Manifest, derive_seed, read_rows
from editor_app.cli import main
from tests.tiny import save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny-model")


def _noise(seed, h, w, channels):
    shape = (h, w) if channels == 1 else (h, w, channels)
    return (np.random.RandomState(seed).rand(*shape) * 255).astype(np.uint8)


def make_folder(root: Path) -> Path:
    """Four pictures of mixed sizes and modes (RGB PNG, RGBA PNG, grey JPEG in a subfolder) and a
    corrupt one. Sidecars give each its drag points (a field the command line leaves out), a mask
    kept under INPUT_DIR for a, more steps for b."""
    d = root / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(_noise(0, 32, 48, 3)).save(d / "a.png")
    Image.fromarray(_noise(1, 40, 40, 4), "RGBA").save(d / "b.png")
    Image.fromarray(_noise(2, 30, 50, 1), "L").save(d / "sub" / "c.jpg")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    mask = np.zeros((32, 48), np.uint8)
    mask[:, 24:] = 255
    (d / "masks").mkdir()
    Image.fromarray(mask).save(d / "masks" / "a.png")
    (d / "a.json").write_text(json.dumps({"points": [[12, 10, 20, 12]], "mask": "masks/a.png"}))
    (d / "b.json").write_text(json.dumps({"points": [[20, 20, 26, 20]], "steps": 6}))
    (d / "sub" / "c.json").write_text(json.dumps({"points": ["25,15,30,15"]}))
    (d / "bad.json").write_text(json.dumps({"points": [[1, 1, 2, 2]]}))
    return d


# Drag, because its result depends on the seed (the identity LoRA's initialisation): a batch that
# ignored the derived seeds would not match the single runs below.
DRAG = ["--steps", 4, "--lora-steps", 2, "--drag-steps", 2]


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _pixels(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im).copy()


def test_batch_fails_one_row_resumes_and_matches_single_edits(model_dir, tmp_path, capsys):
    src, out = make_folder(tmp_path), tmp_path / "out"
    args = ["batch", "drag", src, "-o", out, "--model", model_dir, *DRAG, "--recursive", "--json"]
    code, stdout, err = _run(args, capsys)
    assert code == 1, err  # some failed
    summary = json.loads(stdout)
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (3, 1, 0)
    assert "ETA" in err and "img/min" in err
    rows = {r["image"]: r for r in Manifest(out / "manifest.jsonl", summary["run"]).rows()}
    assert set(rows) == {"a.png", "b.png", "sub/c.jpg", "bad.png"}  # the mask under masks/ is not an image to edit
    assert rows["bad.png"]["status"] == "failed" and rows["bad.png"]["error_kind"] == "invalid input"
    assert "bad.png" in rows["bad.png"]["error"]
    for name in ("a.png", "b.png", "sub/c.jpg"):
        r = rows[name]
        assert r["status"] == "ok" and r["unet_passes"] > 0 and r["seconds"] > 0
        assert r["seed"] == derive_seed(0, name)
    assert rows["b.png"]["params"]["steps"] == 6 and rows["a.png"]["params"]["steps"] == 4  # sidecars applied
    assert rows["sub/c.jpg"]["params"]["points"] == [[25, 15, 30, 15]]
    assert rows["b.png"]["unet_passes"] > rows["a.png"]["unet_passes"]
    assert {r["model_loads"] for r in rows.values() if r["status"] == "ok"} == {1}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png", "sub/c.png"]
    assert Image.open(out / "b.png").mode == "RGBA" and Image.open(out / "sub/c.png").size == (50, 30)

    # Each output is what a single malleable-edit run with the derived seed writes.
    singles = {"a.png": ["--points", "12,10,20,12", "--mask", src / "masks/a.png"],
               "b.png": ["--points", "20,20,26,20", "--steps", 6], "sub/c.jpg": ["--points", "25,15,30,15"]}
    for name, extra in singles.items():
        for seed, same in ((derive_seed(0, name), True), (0, False)):  # the base seed itself: the control
            if not same and name != "b.png":
                continue
            one = tmp_path / "single.png"
            code, _, err = _run(["drag", src / name, "-o", one, "--model", model_dir, *DRAG, "--seed", seed,
                                 "--quiet", *extra], capsys)
            assert code == 0, err
            mode, pixels = _pixels(one)
            batch_mode, batch_pixels = _pixels(out / rows[name]["output"])
            assert mode == batch_mode and np.array_equal(pixels, batch_pixels) == same, (name, seed)

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    code, stdout, _ = _run(args, capsys)
    again = json.loads(stdout)
    assert code == 1 and (again["ok"], again["failed"], again["skipped"]) == (0, 1, 3)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps  # nothing rewritten
    assert len(list(read_rows(out / "manifest.jsonl"))) == 8  # both runs' rows, told apart by "run"

    (src / "bad.png").unlink()
    code, stdout, _ = _run(args + ["--redo"], capsys)
    assert code == 0 and json.loads(stdout)["ok"] == 3


def test_jobs_file_and_a_bad_sidecar(model_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_noise(3, 24, 24, 3)).save(src / "p.png")
    Image.fromarray(_noise(4, 24, 24, 3)).save(src / "q.png")
    (src / "q.json").write_text("{not json")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"image": "p.png", "output": "p_2", "steps": 2, "seed": 7}),
        "# a comment",
        json.dumps({"image": "p.png", "output": "p_4.jpg", "steps": 4}),
        json.dumps({"image": "q.png"}),
        json.dumps({"image": "p.png", "output": "p_bad", "steps": -1}),
    ]) + "\n")
    out = tmp_path / "out"
    code, stdout, err = _run(["batch", "reconstruct", src, "-o", out, "--model", model_dir, "--jobs", jobs,
                              "--json", "--quiet"], capsys)
    assert code == 1, err
    rows = {r["output"]: r for r in Manifest(out / "manifest.jsonl", json.loads(stdout)["run"]).rows()}
    assert rows["p_2.png"]["status"] == "ok" and rows["p_2.png"]["seed"] == 7  # an explicit seed is kept
    assert rows["p_4.jpg"]["status"] == "ok" and rows["p_4.jpg"]["params"]["steps"] == 4
    assert rows["p_4.jpg"]["seed"] == derive_seed(0, "p.png")
    assert rows["q.png"]["status"] == "failed" and "q.json" in rows["q.png"]["error"]
    assert rows["p_bad.png"]["status"] == "failed" and "steps" in rows["p_bad.png"]["error"]
    assert Image.open(out / "p_4.jpg").format == "JPEG" and (out / "p_2.png").is_file()


@pytest.mark.parametrize("case", [
    "output_is_input", "unknown_method", "bad_param", "workers_without_ray", "ray_missing", "collision",
    "missing_required", "jobs_not_json", "jobs_outside", "jobs_with_glob", "no_pictures", "bad_format",
    "sampler_for_another_method",
])
def test_bad_usage_exits_2_before_anything_runs(case, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_noise(0, 16, 16, 3)).save(src / "a.png")
    out = tmp_path / "out"
    args = ["batch", "reconstruct", src, "-o", out, "--steps", 2]
    if case == "output_is_input":
        args[3] = src
    elif case == "unknown_method":
        args[1] = "sharpen"
    elif case == "bad_param":
        args += ["--steps", "-3"]
    elif case == "workers_without_ray":
        args += ["--workers", 2]
    elif case == "ray_missing":
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("ray") else
                            real(name, *a))
        args += ["--ray"]
    elif case == "collision":
        Image.fromarray(_noise(1, 16, 16, 3)).save(src / "a.jpg")
    elif case == "missing_required":
        args[1] = "pnp"
    elif case in ("jobs_not_json", "jobs_outside", "jobs_with_glob"):
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text("{oops\n" if case == "jobs_not_json" else json.dumps({"image": "../x.png"}) + "\n")
        args += ["--jobs", jobs] + (["--glob", "*.png"] if case == "jobs_with_glob" else [])
    elif case == "no_pictures":
        args += ["--glob", "*.tif"]
    elif case == "bad_format":
        args += ["--format", "gif"]
    elif case == "sampler_for_another_method":
        args = ["batch", "drag", src, "-o", out, "--points", "1,1,2,2", "--sampler", "lcm"]
    code, stdout, err = _run(args, capsys)
    assert code == 2, (case, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("malleable-edit: "), err
    assert not out.exists()  # nothing ran, nothing was written
    if case == "ray_missing":
        assert 'pip install "malleable[cluster]"' in err


def test_manifest_keeps_rows_after_a_torn_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    m = Manifest(path, run="r1")
    m.append({"image": "a.png", "status": "ok"})
    with open(path, "ab") as fh:
        fh.write(b'{"run": "r1", "image": "b.p')  # a run killed inside its write
    m.append({"image": "c.png", "status": "failed"})
    assert [r["image"] for r in m.rows()] == ["a.png", "c.png"]
    assert path.read_bytes().endswith(b"\n")


def test_seeds_are_stable_and_depend_on_the_path_only():
    assert derive_seed(0, "a.png") == derive_seed(0, "a.png")
    assert derive_seed(0, "a.png") != derive_seed(1, "a.png") != derive_seed(0, "sub/a.png")
    assert derive_seed(0, "a.png") == 2628510456  # a change here changes every batch's results
    assert all(0 <= derive_seed(s, f"{s}.jpg") < 2 ** 32 for s in range(50))


def test_progress_line_counts_rate_and_eta(monkeypatch):
    from editor_app import cli_batch

    class Log(io.StringIO):
        def isatty(self):
            return False

    clock = iter([0.0, 60.0, 120.0])
    monkeypatch.setattr(cli_batch.time, "monotonic", lambda: next(clock))
    stream = Log()
    bar = cli_batch.BatchProgress(4, quiet=False, stream=stream)
    bar({"image": "a.png", "status": "ok", "seconds": 30.0, "error": None})
    bar({"image": "b.png", "status": "failed", "seconds": 1.0, "error": "Cannot read b.png"})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/4]") and "1.0 img/min" in lines[0] and "ETA 3m00s" in lines[0]
    assert lines[1] == "failed: b.png: Cannot read b.png"
    assert "[2/4]" in lines[2] and "ok 1 failed 1" in lines[2] and "ETA 2m00s" in lines[2]
