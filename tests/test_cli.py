"""malleable-edit: exit codes, no output on failure, JSON, determinism."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor_app.cli import main
from tests.tiny import save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny-model")


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.RandomState(0).rand(30, 50, 3) * 255).astype(np.uint8)).save(path)
    return path


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_edit_writes_png_and_json(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    prev = tmp_path / "prev"
    code, stdout, err = _run(["reconstruct", photo, "-o", out, "--model", model_dir, "--steps", 4, "--json",
                              "--previews", prev], capsys)
    assert code == 0, err
    info = json.loads(stdout)
    for key in ("method", "model", "input", "output", "width", "height", "seed", "seconds", "stages", "params"):
        assert key in info
    assert (info["width"], info["height"]) == (50, 30) and info["params"]["steps"] == 4
    assert Image.open(out).size == (50, 30)
    assert len(list(prev.glob("*.png"))) >= 8


def test_same_inputs_same_bytes(model_dir, photo, tmp_path, capsys):
    outs = []
    for name in ("a.png", "b.png"):
        code, _, err = _run(["reconstruct", photo, "-o", tmp_path / name, "--model", model_dir, "--steps", 3,
                             "--seed", 5, "--quiet"], capsys)
        assert code == 0, err
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("case,code", [
    ("missing_input", 2), ("not_an_image", 2), ("bad_param", 2), ("unknown_method", 2), ("mask_size", 2),
    ("missing_model", 3), ("output_is_input", 2), ("bad_output_format", 2), ("pickle_model", 2),
])
def test_failures_exit_code_one_line_and_no_file(case, code, model_dir, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    args = ["reconstruct", photo, "-o", out, "--model", model_dir, "--steps", 2]
    if case == "missing_input":
        args[1] = tmp_path / "nope.png"
    elif case == "not_an_image":
        (tmp_path / "x.png").write_text("hello")
        args[1] = tmp_path / "x.png"
    elif case == "bad_param":
        args += ["--steps", "-4"]
    elif case == "unknown_method":
        args[0] = "sharpen"
    elif case == "mask_size":
        Image.new("L", (20, 20), 255).save(tmp_path / "m.png")
        args += ["--mask", tmp_path / "m.png"]
    elif case == "missing_model":
        args[5] = tmp_path / "no-such-model"
    elif case == "output_is_input":
        args[3] = photo
    elif case == "bad_output_format":
        out = tmp_path / "out.xyz"
        args[3] = out
    elif case == "pickle_model":
        (tmp_path / "m.ckpt").write_bytes(b"x")
        args[5] = tmp_path / "m.ckpt"
    before = photo.read_bytes()
    got, stdout, err = _run(args, capsys)
    assert got == code, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("malleable-edit: ")
    assert not out.exists() or case == "output_is_input"
    assert photo.read_bytes() == before  # the source is never touched
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_overwrite_allows_output_equal_input(model_dir, photo, capsys):
    before = photo.read_bytes()
    code, _, err = _run(["reconstruct", photo, "-o", photo, "--model", model_dir, "--steps", 2, "--overwrite",
                         "--quiet"], capsys)
    assert code == 0, err and photo.read_bytes() != before


def test_methods_json_lists_every_parameter(capsys):
    code, out, _ = _run(["methods", "--json"], capsys)
    assert code == 0
    methods = {m["name"]: m for m in json.loads(out)}
    assert "reconstruct" in methods
    params = {p["name"]: p for p in methods["reconstruct"]["parameters"]}
    assert params["steps"]["default"] == 50 and params["seed"]["default"] == 0
    assert {"name", "type", "default", "help"} <= set(params["prompt"])


def test_entry_point_runs_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "editor_app.cli", "methods"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0 and "reconstruct" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "editor_app.cli", "reconstruct"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 2 and "malleable-edit:" in proc.stderr


def test_drag_points_from_flags_and_handles_in_json(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "drag.png"
    code, stdout, err = _run(["drag", photo, "-o", out, "--model", model_dir, "--point", "20,15,30,15",
                              "--point", "40,10,40,20", "--steps", 4, "--lora-steps", 2, "--drag-steps", 2,
                              "--json", "--quiet"], capsys)
    assert code == 0, err
    info = json.loads(stdout)
    assert len(info["handles"]) == 2 and info["params"]["points"][0] == [20.0, 15.0, 30.0, 15.0]
    assert Image.open(out).size == (50, 30)


@pytest.mark.parametrize("point", ["20,15,20,15", "80,15,30,15", "1,2,3"])
def test_bad_drag_points_exit_2(point, model_dir, photo, tmp_path, capsys):
    out = tmp_path / "drag.png"
    code, _, err = _run(["drag", photo, "-o", out, "--model", model_dir, "--point", point, "--quiet"], capsys)
    assert code == 2 and err.startswith("malleable-edit: ") and not out.exists()
