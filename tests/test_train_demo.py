"""The demo model's training command: a run, a resumed run, a decoder-only run and an export, in
miniature (a few steps on a small pool), ending in a model folder the app loads."""
import json

import torch
from safetensors.torch import load_file

from tools import train_demo


def _weights(folder, part):
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def test_train_resume_finetune_decoder_and_export(tmp_path):
    work, out = tmp_path / "work", tmp_path / "demo"
    small = ["--work", str(work), "--out", str(out), "--pool", "48", "--vae-batch", "4", "--unet-batch", "4"]
    train_demo.main(small + ["--vae-steps", "2", "--unet-steps", "2"])
    first = json.loads((out / "training.json").read_text())
    assert first["unet"]["steps"] == 2 and first["final"] and len(first["sessions"]) == 1
    unet_before = _weights(out, "unet")

    train_demo.main(small + ["--resume", "--unet-steps", "3"])
    resumed = json.loads((out / "training.json").read_text())
    assert resumed["unet"]["steps"] == 5 and len(resumed["sessions"]) == 2
    assert resumed["sessions"][1]["unet"]["first_step"] == 2
    assert any(not torch.equal(unet_before[k], v) for k, v in _weights(out, "unet").items())

    encoder_before = {k: v.clone() for k, v in torch.load(work / "vae_done.pt")["vae"].items()}
    train_demo.main(small + ["--decoder-only", "--vae-steps", "2"])
    after = torch.load(work / "vae_done.pt")["vae"]
    changed = {k for k in after if not torch.equal(after[k], encoder_before[k])}
    assert changed and all(k.startswith(("decoder.", "post_quant_conv.")) for k in changed)  # latents unchanged

    train_demo.main(small + ["--export-only"])
    final = json.loads((out / "training.json").read_text())
    assert final["unet"]["steps"] == 5 and [bool(s.get("vae_decoder")) for s in final["sessions"]] == [
        False, False, True, False]
    vae = _weights(out, "vae")
    assert torch.allclose(vae["decoder.conv_out.weight"].float(), after["decoder.conv_out.weight"].half().float())

    from core.models import ModelSpec, load_model

    model = load_model(ModelSpec(str(out), device="cpu"))
    assert model.native_size == 64 and model.latent_rgb != [[0.0] * 3] * 4

    # fine-tune the exported model: its VAE, scale and preview map are kept, the steps count on
    tuned = tmp_path / "tuned"
    train_demo.main(["--work", str(tmp_path / "work_ft"), "--out", str(tuned), "--pool", "48", "--unet-batch", "4",
                     "--from-model", str(out), "--unet-steps", "2"])
    info = json.loads((tuned / "training.json").read_text())
    assert info["unet"]["steps"] == 7 and len(info["sessions"]) == 5
    assert info["sessions"][-1]["unet"]["partial_captions"] == 0.5
    assert all(torch.equal(v, _weights(out, "vae")[k]) for k, v in _weights(tuned, "vae").items())
    assert (tuned / "latent_rgb.json").read_text() == (out / "latent_rgb.json").read_text()
    assert "_name_or_path" not in json.loads((tuned / "unet" / "config.json").read_text())
    assert any(not torch.equal(_weights(out, "unet")[k], v) for k, v in _weights(tuned, "unet").items())


def test_partial_captions_name_only_what_the_scene_shows():
    import random

    from evaluation.shapesworld import scenes

    rng = random.Random(0)
    pool = list(scenes(1000, 200, 64))
    short = [train_demo.partial_caption(s.shapes, s.background, rng) for s in pool]
    assert len(set(short)) > 50 and "a shape" in short
    for scene, text in zip(pool, short):
        words = set(text.replace(",", "").split())
        named = {w for s in scene.shapes for w in (s.shape, s.colour, s.fill, s.size, *s.position.split())}
        allowed = named | {scene.background, "a", "an", "and", "shape", "shapes", "two", "on", "background"}
        assert words <= allowed, (text, scene.caption)


def test_scenes_anywhere_join_the_pool_without_changing_it():
    from evaluation.reading import nearest_position

    plain, plain_captions = train_demo.render_pool(6)
    mixed, captions = train_demo.render_pool(6, anywhere=40)
    assert torch.equal(mixed[:6], plain) and captions[:6] == plain_captions and len(mixed) == 46
    rng = __import__("random").Random(train_demo.POOL_SEED + 2)
    centres = []
    for caption in captions[6:]:
        scene = train_demo.scene_anywhere(rng, 64)
        assert caption[0] == scene.caption and scene.shapes[0].position in caption[0]
        assert scene.shapes[0].position == nearest_position(scene.shapes[0].centre, (64, 64))
        centres.append(scene.shapes[0].centre)
    # anywhere: off the five jittered anchors, not only around them
    from evaluation.shapesworld import POSITIONS
    off = [c for c in centres if min(abs(c[0] - fx * 64) + abs(c[1] - fy * 64) for fx, fy in POSITIONS.values()) > 6]
    assert len(off) >= len(centres) // 2
    assert {c[0] for c in captions[6:]} <= train_demo.pool_captions(6, anywhere=40)
