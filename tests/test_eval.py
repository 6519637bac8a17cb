"""malleable-eval on a tiny ShapesBench (3 drag + 3 text samples) and the demo model: the baselines
measure what they must, the formats read and refuse what they must, runs resume and bad samples
fail alone."""
import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInput
from core.models import ModelSpec
from evaluation.cli import main
from evaluation.formats import list_drag_samples, list_text_samples, restricted_loads, rle_decode, rle_encode
from evaluation.results import DRAG_MEASURES, TEXT_MEASURES, validate
from evaluation.runner import RunConfig, run
from evaluation.shapesbench import DRAG_RANGE, make_shapesbench

DEMO = ModelSpec("demo", device="cpu")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench") / "shapesbench"
    make_shapesbench(root, count=3, size=64, seed=0)
    return root


@pytest.fixture(scope="module")
def engine():
    from core.engine import Engine

    return Engine()


def evaluate(kind, root, method, tmp_path, engine, name=None, **kw):
    out = tmp_path / (name or f"{kind}-{method}.json")
    return run(RunConfig(kind, Path(root), method, kw.pop("overrides", {}), DEMO, out, **kw), engine=engine,
               log=lambda line: None), out


def strict_json(path: Path) -> dict:
    def refuse(token):
        raise ValueError(f"non-finite token {token} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---- the benchmark ------------------------------------------------------------------------------

def test_shapesbench_has_both_layouts_and_ground_truth(bench):
    drags = list_drag_samples(bench / "drag")
    texts = list_text_samples(bench / "text")
    assert len(drags) == 3 and len(texts) == 3
    assert {r.id.split("/")[0] for r in drags} == {"plain", "textured", "two_shapes"}
    folder = bench / "drag" / drags[0].id
    for name in ("original_image.png", "user_drag.png", "meta_data.pkl", "target_image.png", "truth.json"):
        assert (folder / name).is_file(), name
    meta = pickle.loads((folder / "meta_data.pkl").read_bytes())
    assert set(meta) == {"prompt", "points", "mask"} and meta["mask"].dtype == np.uint8
    assert set(np.unique(meta["mask"])) <= {0, 255}
    mapping = json.loads((bench / "text" / "mapping_file.json").read_text())
    entry = next(iter(mapping.values()))
    assert {"image_path", "original_prompt", "editing_prompt", "editing_instruction", "editing_type_id",
            "blended_word", "mask"} <= set(entry)
    assert "[" in entry["editing_prompt"] and (bench / "text" / "annotation_images" / entry["image_path"]).is_file()


def test_shapesbench_is_hard_in_the_ways_photos_are(tmp_path):
    root = tmp_path / "b"
    make_shapesbench(root, count=24, size=64, seed=3)
    drags = [r.load() for r in list_drag_samples(root / "drag")]
    texts = [r.load() for r in list_text_samples(root / "text")]
    sizes = {s.image.shape[:2] for s in drags + texts}
    assert any(h != w for h, w in sizes), "some pictures are not square"
    for s in drags:
        for hx, hy, tx, ty in s.points:
            share = math.hypot(tx - hx, ty - hy) / max(s.image.shape[:2])
            assert DRAG_RANGE[0] - 0.02 <= share <= DRAG_RANGE[1] + 0.02
    directions = {(np.sign(tx - hx), np.sign(ty - hy)) for s in drags for hx, hy, tx, ty in s.points}
    assert len(directions) >= 4, "drags go in every direction"
    assert any(len(s.points) > 1 for s in drags)
    assert any(len(s.truth.data["shapes_before"]) == 2 for s in drags)
    assert len({s.truth.data["background"]["texture"] for s in drags + texts}) >= 4
    centres = {tuple(round(v) for v in s.truth.data["shapes_before"][0]["centre"]) for s in drags}
    assert len(centres) >= 20, "objects anywhere, not in five places"
    assert {s.truth.data["edit"]["attribute"] for s in texts} == {"colour", "shape", "fill"}
    prompts = [s.source_prompt for s in texts]
    assert any(p.endswith("background") for p in prompts) and any(p in ("a shape", "a circle") or
                                                                  len(p.split()) <= 3 for p in prompts)
    # a larger count keeps the smaller one's samples
    small = tmp_path / "small"
    make_shapesbench(small, count=3, size=64, seed=3)
    for ref in list_drag_samples(small / "drag"):
        a, b = ref.load(), next(r for r in list_drag_samples(root / "drag") if r.id == ref.id).load()
        assert (a.image == b.image).all() and a.points == b.points


# ---- the measures on the baselines ----------------------------------------------------------------

def test_identity_drag_distance_is_the_initial_distance(bench, tmp_path, engine):
    doc, out = evaluate("drag", bench / "drag", "identity", tmp_path, engine)
    rows = doc["samples"]
    assert [r["status"] for r in rows] == ["ok"] * 3
    for r in rows:
        assert abs(r["mean_distance"] - r["initial_distance"]) <= 1.0, r
        assert abs(r["mean_distance_truth"] - r["initial_distance"]) <= 1.0, r
        assert r["psnr_outside_mask"] is None and r["flags"]["psnr_outside_mask"] == "inf"
        assert r["mean_distance_512"] == pytest.approx(r["mean_distance"] * 512 / 64)
    assert validate(strict_json(out)) == []


def test_the_ground_truth_as_the_result_scores_perfectly(bench, tmp_path, engine):
    drag, _ = evaluate("drag", bench / "drag", "truth", tmp_path, engine)
    for r in drag["samples"]:
        assert r["mean_distance_truth"] < 0.5 and r["silhouette_iou"] > 0.98 and r["object_found"], r
    text, _ = evaluate("text", bench / "text", "truth", tmp_path, engine)
    for r in text["samples"]:
        assert r["attribute_success"] and r["others_kept"] and r["silhouette_iou"] > 0.98, r
        assert r["centroid_shift"] < 0.5 and r["background_mse"] == 0.0
    identity, out = evaluate("text", bench / "text", "identity", tmp_path, engine)
    assert identity["summary"]["attribute_success"] == 0.0 and identity["summary"]["structure_distance"] == 0.0
    assert validate(strict_json(out)) == []
    assert set(TEXT_MEASURES) <= set(identity["summary"]) and set(DRAG_MEASURES) <= set(drag["summary"])
    # every row says its prompt style, from the sample's truth (the targets are read per style)
    for r in drag["samples"] + text["samples"]:
        assert r["prompt_style"] in ("full", "short", "generic"), r


def test_the_text_to_image_control_draws_the_prompt_and_keeps_nothing_of_the_picture(bench, tmp_path, engine):
    doc, out = evaluate("text", bench / "text", "text-to-image", tmp_path, engine)
    assert validate(strict_json(out)) == [] and doc["summary"]["ok"] == 3
    # a new picture at each sample's size (non-square ones too); a plain white scene the model can
    # redraw from its caption keeps its background, a textured one cannot
    assert all(r["structure_distance"] > 0 and r["passes"]["unet"] == 50 for r in doc["samples"])
    assert min(r["background_psnr"] for r in doc["samples"] if r["background_psnr"] is not None) < 30
    drag, _ = evaluate("drag", bench / "drag", "text-to-image", tmp_path, engine, limit=1)
    assert drag["samples"][0]["status"] == "ok" and drag["samples"][0]["psnr_outside_mask"] < 30


def test_each_method_runs_on_a_sample_with_its_inputs(bench, tmp_path, engine):
    """The per-method mapping from a sample to parameters (points and mask, prompts, words) is
    accepted by every method; tiny step counts keep it quick."""
    tiny = {"drag": {"steps": 6, "lora_steps": 2, "drag_steps": 2}, "quick-drag": {"steps": 6},
            "pnp": {"steps": 4}, "pix2pix-zero": {"steps": 4, "reg_steps": 0},
            "style-diffusion": {"steps": 4, "train_iters_scale": 1}, "diffuseit": {"steps": 6, "resample": 0}}
    for method, overrides in tiny.items():
        kind = "drag" if method in ("drag", "quick-drag") else "text"
        doc, _ = evaluate(kind, bench / kind, method, tmp_path, engine, limit=1, overrides=overrides)
        row = doc["samples"][0]
        assert row["status"] == "ok", row
        assert row["passes"].get("unet", 0) > 0 and row["seconds"] > 0
        if kind == "drag":
            assert len(row["method_handles"]) == len(row["landed"])


def test_a_few_step_sampler_is_kept_with_the_run(bench, tmp_path, capsys):
    out = tmp_path / "lcm.json"
    args = ["drag", str(bench / "drag"), "--method", "quick-drag", "--out", str(out), "--steps", "4", "--limit", "1",
            "--device", "cpu", "--quiet"]
    assert main(args + ["--sampler", "lcm"]) == 0
    doc = strict_json(out)
    assert doc["sampler"] == "lcm" and doc["samples"][0]["status"] == "ok"
    assert doc["samples"][0]["passes"]["unet"] <= 8  # LCM's 4 timesteps: 3 inverted, 3 denoised
    capsys.readouterr()
    assert main(args) == 2  # the same file with DDIM is another run
    assert "lcm sampler" in capsys.readouterr().err
    # a method that does not hold up with it is refused before any sample runs
    assert main(["drag", str(bench / "drag"), "--method", "drag", "--sampler", "lcm", "--device", "cpu",
                 "--out", str(tmp_path / "d.json"), "--quiet"]) == 2
    assert "few-step" in capsys.readouterr().err and not (tmp_path / "d.json").exists()


# ---- formats --------------------------------------------------------------------------------------

def test_rle_decode_against_a_hand_made_mask():
    want = np.array([[0, 1, 1, 0],
                     [0, 0, 0, 1],
                     [1, 1, 0, 0]], bool)
    assert (rle_decode([1, 2, 7, 3], 3, 4) == want).all()
    assert (rle_decode([[1, 2], [7, 3]], 3, 4) == want).all()
    assert rle_encode(want) == [1, 2, 7, 3]
    assert rle_decode([10, 50], 3, 4).sum() == 2  # a run past the end is clipped
    for bad in ([1, 2, 3], [-1, 2], [1.5, 2], ["a", 2], [12, 1]):
        with pytest.raises(InvalidInput):
            rle_decode(bad, 3, 4)


class _CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_malicious_pickle_is_refused_and_creates_nothing(bench, tmp_path, engine):
    victim = tmp_path / "pwned.txt"
    with pytest.raises(pickle.UnpicklingError, match="io.open"):
        restricted_loads(pickle.dumps(_CreatesAFile(str(victim))))
    assert not victim.exists()
    drag = tmp_path / "drag"
    shutil.copytree(bench / "drag", drag)
    evil = next(drag.rglob("meta_data.pkl"))
    evil.write_bytes(pickle.dumps({"prompt": "x", "points": [[1, 1], [2, 2]], "mask": _CreatesAFile(str(victim))}))
    doc, _ = evaluate("drag", drag, "identity", tmp_path, engine)
    failed = [r for r in doc["samples"] if r["status"] == "failed"]
    assert len(failed) == 1 and "refused" in failed[0]["error"] and failed[0]["id"] in failed[0]["error"]
    assert not victim.exists()
    # plain pickles of builtins and numpy arrays, in every protocol, are read
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        obj = {"points": [[1, 2], [3, 4]], "mask": np.eye(3, dtype=np.uint8) * 255, "s": np.float64(2.0)}
        back = restricted_loads(pickle.dumps(obj, protocol=protocol))
        assert (back["mask"] == obj["mask"]).all() and back["s"] == 2.0


# ---- runs ------------------------------------------------------------------------------------------

def test_a_rerun_skips_finished_samples(bench, tmp_path, engine):
    out = tmp_path / "resume.json"
    cfg = RunConfig("drag", bench / "drag", "identity", {}, DEMO, out, limit=2)
    first = run(cfg, engine=engine)
    assert [r["id"] for r in first["samples"]] == [r.id for r in list_drag_samples(bench / "drag")][:2]
    seen = []
    cfg.limit = None
    second = run(cfg, progress=lambda i, n, sid, row, skipped: seen.append((sid, skipped)), engine=engine)
    assert [s for _, s in seen] == [True, True, False]
    assert second["samples"][:2] == first["samples"] and second["complete"]
    other = RunConfig("drag", bench / "drag", "truth", {}, DEMO, out)
    with pytest.raises(InvalidInput, match="another run"):
        run(other, engine=engine)


def test_shards_share_a_run_and_a_plain_rerun_merges_them(bench, tmp_path, engine):
    out = tmp_path / "sharded.json"
    for k in (1, 2):
        part = run(RunConfig("text", bench / "text", "identity", {}, DEMO, out, shard=(k, 2)), engine=engine)
        assert len(part["samples"]) == (2 if k == 1 else 1)
    assert not out.exists() and (tmp_path / "sharded.shard1of2.json").is_file()
    seen = []
    merged = run(RunConfig("text", bench / "text", "identity", {}, DEMO, out), engine=engine,
                 progress=lambda i, n, sid, row, skipped: seen.append(skipped))
    assert seen == [True, True, True] and merged["summary"]["ok"] == 3 and validate(strict_json(out)) == []


def _one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_a_one_line_error_or_a_failed_row(bench, tmp_path, capsys, engine):
    assert "No benchmark folder" in _one_line_error(capsys, ["drag", str(tmp_path / "nowhere"), "--method", "identity"])
    assert "drag_steps" in _one_line_error(capsys, ["drag", str(bench / "drag"), "--method", "drag",
                                                    "--drag-steps", "many"])
    # a broken mapping file: nothing can be listed
    text = tmp_path / "text"
    shutil.copytree(bench / "text", text)
    mapping = json.loads((text / "mapping_file.json").read_text())
    (text / "mapping_file.json").write_text("{not json")
    assert "mapping_file.json" in _one_line_error(capsys, ["text", str(text), "--method", "identity"])
    # a bad RLE and a missing image in the middle of a run: failed rows naming them, the rest measured
    ids = list(mapping)
    mapping[ids[0]]["mask"] = [5, -3]
    (text / "annotation_images" / mapping[ids[1]]["image_path"]).unlink()
    (text / "mapping_file.json").write_text(json.dumps(mapping))
    doc, out = evaluate("text", text, "identity", tmp_path, engine, name="bad-text.json")
    status = {r["id"]: r for r in doc["samples"]}
    assert status[ids[0]]["status"] == "failed" and ids[0] in status[ids[0]]["error"]
    assert "negative" in status[ids[0]]["error"]
    assert status[ids[1]]["status"] == "failed" and "missing" in status[ids[1]]["error"]
    assert status[ids[2]]["status"] == "ok"
    assert validate(strict_json(out)) == []
    # a garbled pickle and a sample folder without its image
    drag = tmp_path / "drag"
    shutil.copytree(bench / "drag", drag)
    folders = sorted(p.parent for p in drag.rglob("meta_data.pkl"))
    (folders[0] / "meta_data.pkl").write_bytes(b"\x80\x04garbage")
    (folders[1] / "original_image.png").unlink()
    doc, _ = evaluate("drag", drag, "identity", tmp_path, engine, name="bad-drag.json")
    assert [r["status"] for r in doc["samples"]] == ["failed", "failed", "ok"]
    assert "not a readable pickle" in doc["samples"][0]["error"]
    assert "original_image.png is missing" in doc["samples"][1]["error"]


def test_the_command_line_writes_results_and_a_report(bench, tmp_path, capsys):
    out, report = tmp_path / "r.json", tmp_path / "report.md"
    code = main(["text", str(bench / "text"), "--method", "identity", "--out", str(out), "--report", str(report),
                 "--device", "cpu", "--quiet"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["summary"]["ok"] == 3
    assert validate(strict_json(out)) == []
    assert "structure_distance" in report.read_text() and report.with_suffix(".png").is_file()
    assert all((tmp_path / r["image"]).is_file() for r in strict_json(out)["samples"])
    assert os.path.getsize(report.with_suffix(".png")) > 1000


def test_make_shapesbench_from_the_command_line_wants_a_new_folder(tmp_path, capsys):
    assert main(["make-shapesbench", str(tmp_path / "b"), "--count", "1", "--size", "48"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 1
    assert max(next(iter(list_drag_samples(tmp_path / "b" / "drag"))).load().image.shape[:2]) == 48
    assert "not empty" in _one_line_error(capsys, ["make-shapesbench", str(tmp_path / "b")])


def test_a_suite_table_shows_only_the_kinds_it_has_results_for(bench, engine, tmp_path):
    from evaluation.suite import results_path, suite_table

    out = tmp_path / "suite"
    path = results_path(out, "drag", "identity")
    path.parent.mkdir(parents=True)
    evaluate("drag", bench / "drag", "identity", path.parent, engine, name=path.name)
    table = suite_table(out)
    assert "**Drag**" in table and "| identity (input unchanged) | 3 |" in table
    assert "Text-guided" not in table and "Attribute done" not in table


def test_the_suite_table_goes_between_the_readme_markers(tmp_path):
    from evaluation.suite import README_BEGIN, README_END, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    update_readme(readme, "| new | table |\n")
    assert readme.read_text() == f"intro\n{README_BEGIN}\n| new | table |\n{README_END}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(InvalidInput, match="no table block"):
        update_readme(readme, "x")
    # a named block beside the default one: each rewritten alone
    from evaluation.suite import readme_markers

    begin, end = readme_markers("seeds")
    readme.write_text(f"{README_BEGIN}\na\n{README_END}\n{begin}\nb\n{end}\n")
    update_readme(readme, "pooled", "seeds")
    assert readme.read_text() == f"{README_BEGIN}\na\n{README_END}\n{begin}\npooled\n{end}\n"


def test_every_stored_benchmark_run_reads_back_and_tables():
    # The README cites these folders by `malleable-eval table DIR [--before DIR]`: each must load.
    from pathlib import Path

    from evaluation.results import read_results
    from evaluation.suite import suite_table

    root = Path(__file__).resolve().parents[1] / "tools" / "bench_results"
    folders = sorted(p for p in root.glob("shapesbench-24*") if (p / "results").is_dir())
    assert len(folders) >= 10
    for folder in folders:
        for f in (folder / "results").glob("*.json"):
            read_results(f)
        assert "ShapesBench" in suite_table(folder, root / "shapesbench-24")


def test_suites_of_other_seeds_pool_into_one_table(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from core.errors import InvalidInput
    from evaluation.pool import pool_suites
    from evaluation.results import read_results
    from evaluation.suite import suite_table

    stored = Path(__file__).resolve().parents[1] / "tools" / "bench_results" / "shapesbench-24"
    a, b = tmp_path / "seed0", tmp_path / "seed1"
    for f in (a, b):
        (f / "results").mkdir(parents=True)
        for name in ("text-pnp.json", "text-identity.json"):
            shutil.copy(stored / "results" / name, f / "results" / name)
    (a / "results" / "drag-drag.json").write_text((stored / "results" / "drag-drag.json").read_text())  # a alone
    assert sorted(pool_suites(tmp_path / "pool", [a, b])) == ["text-identity.json", "text-pnp.json"]
    pooled = read_results(tmp_path / "pool" / "results" / "text-pnp.json")
    ids = [r["id"] for r in pooled["samples"]]
    assert len(ids) == 48 == len(set(ids)) and ids[0].startswith("seed0/") and ids[-1].startswith("seed1/")
    assert pooled["benchmark"]["samples"] == 48
    # each picture still found from the pooled file: its path points at the original
    assert (tmp_path / "pool" / "results" / pooled["samples"][0]["image"]).resolve() == \
        (a / "results" / "text-pnp_images" / "100000000001.png").resolve()
    assert "| pnp | all | 48 |" in suite_table(tmp_path / "pool")
    with pytest.raises(InvalidInput, match="not finished"):
        doc = json.loads((b / "results" / "text-pnp.json").read_text())
        (b / "results" / "text-pnp.json").write_text(json.dumps({**doc, "complete": False}))
        pool_suites(tmp_path / "pool2", [a, b])
    with pytest.raises(InvalidInput, match="one of the folders"):
        pool_suites(a, [a, b])
