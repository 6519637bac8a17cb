"""malleable-edit's answers to bad input and interruptions: each case its exit code and one line,
no input overwritten, no output or temporary file left, checks made before any work."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor_app.cli import main
from tests.test_cli import model_dir, photo  # noqa: F401  (fixtures: the tiny model folder, a 50x30 picture)
from tests.tiny import SCHEDULER, save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX signals")


def run(args, capsys):
    capsys.readouterr()  # what the test printed while preparing (model saving bars) is not the CLI's
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("malleable-edit: "), err
    return lines[0]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ inputs are protected
def test_mask_is_never_the_output(model_dir, photo, tmp_path, capsys):
    mask = tmp_path / "m.png"
    Image.new("L", (50, 30), 255).save(mask)
    before = mask.read_bytes()
    for extra in ([], ["--overwrite"]):  # --overwrite is about INPUT only
        code, _, err = run(["reconstruct", photo, "-o", mask, "--mask", mask, "--model", model_dir, *extra], capsys)
        assert code == 2 and "--mask" in one_line(err)
    link = tmp_path / "link.png"  # the same file under another name
    link.symlink_to(mask)
    code, _, err = run(["reconstruct", photo, "-o", link, "--mask", mask, "--model", model_dir], capsys)
    assert code == 2 and "--mask" in one_line(err)
    assert mask.read_bytes() == before


def test_style_image_is_never_the_output(model_dir, photo, tmp_path, capsys):
    style = tmp_path / "style.png"
    Image.new("RGB", (40, 40), (0, 0, 255)).save(style)
    before = style.read_bytes()
    code, _, err = run(["diffuseit", photo, "-o", style, "--style-image", style, "--model", model_dir], capsys)
    assert code == 2 and "--style-image" in one_line(err)
    assert style.read_bytes() == before


# ------------------------------------------------------------------------------ checked before any work
@pytest.fixture()
def not_an_image(tmp_path):
    """An input that fails as soon as it is read: a check that answers first ran before any work."""
    path = tmp_path / "text.png"
    path.write_text("not a picture")
    return path


def test_previews_naming_a_file_is_exit_2_before_any_work(not_an_image, tmp_path, capsys):
    (tmp_path / "prev.txt").write_text("x")
    code, _, err = run(["reconstruct", not_an_image, "-o", tmp_path / "o.png", "--previews", tmp_path / "prev.txt",
                        "--model", tmp_path / "no-model"], capsys)
    assert code == 2 and "--previews" in one_line(err) and "is a file" in err


@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_previews_in_an_impossible_place_is_exit_2(not_an_image, tmp_path, capsys, where):
    if where == "under a file":
        (tmp_path / "f").write_text("x")
        previews = tmp_path / "f" / "previews"
    else:
        if not Path("/proc/self").is_dir():
            pytest.skip("needs /proc, where even root cannot create folders")
        previews = Path("/proc/self/previews")
    code, _, err = run(["reconstruct", not_an_image, "-o", tmp_path / "o.png", "--previews", previews], capsys)
    assert code == 2 and "--previews" in one_line(err)


def test_unwritable_output_folder_is_exit_2_before_any_work(not_an_image, tmp_path, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where even root cannot create files")
    code, _, err = run(["reconstruct", not_an_image, "-o", "/proc/self/out.png"], capsys)
    assert code == 2 and "Cannot write into the output folder" in one_line(err)
    code, _, err = run(["reconstruct", not_an_image, "-o", tmp_path], capsys)  # a folder, not a file
    assert code == 2 and ("folder" in one_line(err) or "format" in err)


# ------------------------------------------------------------------------------ damaged model folders
@pytest.mark.parametrize("damage", ["latent_rgb garbage", "latent_rgb wrong shape", "no scheduler config",
                                    "scheduler not json", "scheduler bad values", "weights truncated"])
def test_damaged_model_folder_is_exit_3_one_line(tmp_path, photo, capsys, damage):
    folder = save_tiny_model(tmp_path / "model")
    if damage == "latent_rgb garbage":
        (folder / "latent_rgb.json").write_text("{not json")
    elif damage == "latent_rgb wrong shape":
        (folder / "latent_rgb.json").write_text(json.dumps({"factors": [[1, 2]], "bias": [0, 0, 0]}))
    elif damage == "no scheduler config":
        (folder / "scheduler" / "scheduler_config.json").unlink()
    elif damage == "scheduler not json":
        (folder / "scheduler" / "scheduler_config.json").write_bytes(b"\xff\xfe garbage")
    elif damage == "scheduler bad values":
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**SCHEDULER, "beta_schedule": "wobbly"}))
    else:
        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    out = tmp_path / "o.png"
    code, _, err = run(["reconstruct", photo, "-o", out, "--model", folder, "--steps", 2, "--quiet"], capsys)
    assert code == 3, err
    one_line(err)
    assert not out.exists()


# ------------------------------------------------------------------------------ steps at the maximum
@pytest.mark.parametrize("method", ["reconstruct", "pnp"])
def test_steps_equal_to_the_training_timesteps_work(tmp_path, photo, capsys, method):
    """--steps 1000 on SD (1000 training timesteps) crashed at timestep 1000. The same boundary on a
    model trained with 20 timesteps costs 20 steps instead of 1000 (tests/test_schedule_range.py
    checks every step count up to 1000 on the real schedules)."""
    folder = save_tiny_model(tmp_path / "model")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**SCHEDULER, "num_train_timesteps": 20}))
    out = tmp_path / "o.png"
    code, _, err = run([method, photo, "-o", out, "--model", folder, "--steps", 20, "--quiet", "--prompt", "a dog"], capsys)
    assert code == 0, err
    assert Image.open(out).size == (50, 30)


# ------------------------------------------------------------------------------ warnings stay out
def test_library_warnings_never_reach_a_failure(tmp_path, model_dir, capsys):
    # A TIFF whose EXIF block is cut short: Pillow warns ("Corrupt EXIF data") while reading it.
    path = tmp_path / "small.tif"
    img = Image.new("RGB", (8, 8))
    exif = img.getexif()
    exif[0x010E] = "x" * 200
    img.save(path, exif=exif)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:-60]))
    code, _, err = run(["reconstruct", path, "-o", tmp_path / "o.png", "--model", model_dir], capsys)
    assert code == 2
    one_line(err)


# ------------------------------------------------------------------------------ the real program
SITE_HOOKS = '''
import os, signal, sys, time
when = os.environ.get("MALLEABLE_TEST_SIGNAL_AT")
sig = getattr(signal, os.environ.get("MALLEABLE_TEST_SIGNAL", "SIGINT"))
if when == "torch import":
    # The signal arrives while torch is being imported (the first seconds of every run).
    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                sys.meta_path.remove(self)
                os.kill(os.getpid(), sig)
            return None
    sys.meta_path.insert(0, Finder())
elif when == "save":
    # The signal arrives while the output file is half written.
    import PIL.Image
    original = PIL.Image.Image.save
    def save(self, fp, *args, **kwargs):
        if not isinstance(fp, (str, os.PathLike)) and getattr(fp, "mode", "") == "wb":
            fp.write(b"half a picture")
            fp.flush()
            os.kill(os.getpid(), sig)
            time.sleep(5)
        return original(self, fp, *args, **kwargs)
    PIL.Image.Image.save = save
'''


def program(args, tmp_path, env_extra=None, **popen):
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITE_HOOKS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), str(ROOT)]), **(env_extra or {})}
    env.pop("MALLEABLE_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "editor_app.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@posix_only
@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_while_torch_imports(tmp_path, photo, model_dir, sig, code):
    out = tmp_path / "o.png"
    proc = program(["reconstruct", photo, "-o", out, "--model", model_dir, "--steps", 2], tmp_path,
                   {"MALLEABLE_TEST_SIGNAL_AT": "torch import", "MALLEABLE_TEST_SIGNAL": sig})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert "no file was written" in one_line(err)
    assert not out.exists() and no_temp_files(tmp_path)


@posix_only
def test_sigterm_while_the_output_is_written_leaves_no_temp_file(tmp_path, photo, model_dir):
    out = tmp_path / "o.png"
    proc = program(["reconstruct", photo, "-o", out, "--model", model_dir, "--steps", 2, "--quiet"], tmp_path,
                   {"MALLEABLE_TEST_SIGNAL_AT": "save", "MALLEABLE_TEST_SIGNAL": "SIGTERM"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    one_line(err)
    assert not out.exists() and no_temp_files(tmp_path)


@posix_only
def test_ctrl_c_during_the_edit(tmp_path, photo, model_dir):
    out, previews = tmp_path / "o.png", tmp_path / "previews"
    proc = program(["reconstruct", photo, "-o", out, "--model", model_dir, "--steps", 200, "--quiet",
                    "--previews", previews], tmp_path)
    deadline = time.monotonic() + 240
    while not any(previews.glob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first preview: the edit is running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    one_line(err)
    assert not out.exists() and no_temp_files(tmp_path)


@posix_only
def test_native_library_output_never_reaches_a_failure(tmp_path, model_dir):
    """libtiff prints its complaints straight to file descriptor 2; the program's failure is still
    one line."""
    buf = tmp_path / "x.tif"
    Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype(np.uint8)).save(
        buf, compression="tiff_adobe_deflate")
    data = bytearray(buf.read_bytes())
    for i in range(20, 200):
        data[i] ^= 0x5A  # the compressed strip: libtiff reports "ZIPDecode: Decoding error"
    buf.write_bytes(bytes(data))
    proc = program(["reconstruct", buf, "-o", tmp_path / "o.png", "--model", model_dir], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    one_line(err)
