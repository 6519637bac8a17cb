"""The installer's fast checks: the spec bundles the entry script and the resources, the self-test
a build runs passes here (and fails when it should), the entry script dispatches, the .desktop
entry is valid. Building the bundle itself is packaging/check_bundle.sh (minutes, not a test)."""
import configparser
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "malleable.spec"


def test_spec_names_entry_script_and_resources():
    text = SPEC.read_text()
    assert '"malleable_entry.py"' in text and (ROOT / "packaging" / "malleable_entry.py").is_file()
    assert '(ROOT / "resources").rglob("*")' in text  # the whole resources/ tree, as data
    assert '"torchvision"' in text  # excluded: not used, and large
    assert '"ray"' in text  # the cluster extra never goes into the installer
    assert 'name="malleable"' in text and '"malleable-edit.cmd"' in text and 'symlink_to("malleable")' in text
    for needed in ("models/demo/model_index.json", "samples/shapes.png", "icons/malleable-256.png",
                   "configs/stable-diffusion-v1-5/model_index.json", "sentences", "tokenizer"):
        assert (ROOT / "resources" / needed).exists(), needed


def test_self_test_passes_on_the_demo_model(capsys):
    from editor_app.self_test import run_self_test

    assert run_self_test() == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("malleable self-test: ok"), out


def test_self_test_fails_with_one_line_when_something_is_missing(monkeypatch, capsys):
    from editor_app import self_test

    monkeypatch.setattr(self_test, "SAMPLE", ("samples", "no-such-image.png"))
    assert self_test.run_self_test() != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FAILED" in err[0] and "no-such-image.png" in err[0], err


def test_blank_output_is_caught():
    from PIL import Image

    from editor_app.self_test import _check

    src = Image.new("RGB", (64, 48))
    assert "blank" in _check(src, Image.new("RGB", (64, 48), (128, 128, 128)))
    assert "48" in _check(src, Image.new("RGB", (48, 48)))


def _entry_module():
    spec = importlib.util.spec_from_file_location("malleable_entry", ROOT / "packaging" / "malleable_entry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("argv", [["/usr/bin/malleable-edit", "methods"], ["malleable", "--cli", "methods"],
                                  ["C:\\Malleable\\MALLEABLE-EDIT.EXE", "methods"]])
def test_entry_dispatches_to_the_command_line(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", argv)
    assert _entry_module().main() == 0
    assert "reconstruct" in capsys.readouterr().out


def test_desktop_entry_is_valid():
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(ROOT / "packaging" / "linux" / "malleable.desktop")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "malleable"
    assert entry["Icon"] == "malleable" and (ROOT / "resources" / "icons" / "malleable.svg").is_file()
    assert "Graphics" in entry["Categories"].rstrip(";").split(";")
    assert entry["Name"] == "Malleable" and entry["Terminal"] == "false"


def test_first_run_help_says_how_to_get_sd15():
    from editor_app.first_run import FIRST_RUN_MODEL_HELP

    for needed in ("stable-diffusion-v1-5/stable-diffusion-v1-5", ".safetensors", "4 GB", "6 GB"):
        assert needed in FIRST_RUN_MODEL_HELP
