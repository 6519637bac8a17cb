"""The Stable Diffusion family seam: SD 2.x (v-prediction) and SDXL (two text encoders, added
conditioning) on tiny in-process models — detection, conditioning, inversion, every method, and
single-file checkpoints read through shipped-style configs."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core import EditRequest, InvalidInput, ModelSpec
from core.engine import Engine
from core.families import FAMILIES, detect_checkpoint, detect_folder
from core.models import load_model, load_single_file
from core.registry import all_methods
from core.sampling import ddim_invert, denoise
from core.schedule import DDIMSchedule
from core.unet_calls import unet_forward
from tests.test_models import assert_same_weights
from tests.tiny import build_tiny_family_components, build_tiny_family_model, save_tiny_family_model
from tools.convert_to_single_file import SD2_TEXT_PREFIX, SDXL_TEXT_PREFIXES, to_ldm_state_dict

CPU = torch.device("cpu")
FAMILY_NAMES = ("sd2", "sdxl")


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_model(request, tmp_path_factory):
    return build_tiny_family_model(tmp_path_factory.mktemp(request.param), request.param)


def _engine_for(model) -> Engine:
    eng = Engine()
    eng.models.get = lambda spec, progress=None: model
    return eng


def _picture(w=48, h=32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.float32)
    img[6:16, 8:20] = (240, 200, 40)
    return (img + rng.normal(0, 5, img.shape)).clip(0, 255).astype(np.uint8)


# ---- detection ------------------------------------------------------------------------------------------

def test_families_are_detected_from_the_shipped_configs():
    for name, family in FAMILIES.items():
        assert detect_folder(family.config_dir) == name, name


@pytest.fixture(scope="module")
def meta_components():
    """Every component of SD 2.1 and SDXL built from the shipped configs on the meta device (no memory)."""
    from tools.make_family_configs import build_meta

    return {family: build_meta(FAMILIES[family].config_dir) for family in FAMILY_NAMES}


def test_the_shipped_configs_match_the_published_parameter_counts(meta_components):
    from tools.make_family_configs import EXPECTED

    for family, parts in meta_components.items():
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        assert counts == EXPECTED[family], family


def test_model_spec_refuses_an_unknown_family_or_prediction():
    with pytest.raises(InvalidInput, match="family"):
        ModelSpec("demo", family="sd9")
    with pytest.raises(InvalidInput, match="prediction"):
        ModelSpec("demo", prediction="flow")


# ---- conditioning --------------------------------------------------------------------------------------

def test_sdxl_conditioning_has_both_encoders_and_a_pooled_embedding(tmp_path):
    model = build_tiny_family_model(tmp_path, "sdxl")
    cond = model.encode_text(["a red cat", ""])
    assert cond.embeds.shape == (2, 77, 80) and cond.pooled.shape == (2, 16)  # 32 + 48 wide, 16 pooled
    assert torch.count_nonzero(cond.embeds[1]) == 0 and torch.count_nonzero(cond.pooled[1]) == 0  # empty: zeros
    with torch.no_grad():  # the embeddings are the two encoders' penultimate layers side by side
        ids = model.tokenize(["a red cat"])
        h1 = model.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        out2 = model.text_encoder_2(ids, output_hidden_states=True)
    torch.testing.assert_close(cond.embeds[:1], torch.cat([h1, out2.hidden_states[-2]], -1))
    torch.testing.assert_close(cond.pooled[:1], out2.text_embeds)


def test_added_time_ids_reach_the_unet(tmp_path):
    model = build_tiny_family_model(tmp_path, "sdxl")
    seen = {}

    def grab(_module, args, _out):
        seen["ids"] = args[0]  # returns None: the output stays

    handle = model.unet.add_time_proj.register_forward_hook(grab)
    try:
        with torch.no_grad():
            unet_forward(model, torch.randn(2, 4, 12, 20), 500, model.encode_text("a cat"))
    finally:
        handle.remove()
    # (original h, w, crop top, left, target h, w) of the 24 x 40 px working canvas, per row
    assert seen["ids"].reshape(2, 6).tolist() == [[24, 40, 0, 0, 24, 40]] * 2
    with pytest.raises(ValueError, match="pooled"):
        unet_forward(model, torch.randn(1, 4, 8, 8), 500, model.encode_text("a cat").embeds)


# ---- inversion and methods ------------------------------------------------------------------------------------

def test_inversion_round_trips(family_model):
    # A random UNet's prediction is rough in x and t; a trained one is smooth, which is what makes
    # DDIM inversion work. A copy with a shrunken output layer behaves so (as in test_inversion).
    model = dataclasses.replace(family_model, unet=__import__("copy").deepcopy(family_model.unet), _text_cache={})
    with torch.no_grad():
        model.unet.conv_out.weight.mul_(0.1)
        model.unet.conv_out.bias.mul_(0.1)
    schedule = DDIMSchedule(model.scheduler_config, 50)
    assert schedule.prediction_type == ("v_prediction" if model.family == "sd2" else "epsilon")
    cond = model.encode_text("a picture")
    g = torch.Generator().manual_seed(0)
    latent = torch.nn.functional.avg_pool2d(torch.randn(1, 4, 16, 16, generator=g), 3, 1, 1) * 2
    traj = ddim_invert(model, schedule, latent, cond)
    back = denoise(model, schedule, traj.noisiest, lambda x, i, t: unet_forward(model, x, t, cond))
    err = (back - latent).abs().mean() / latent.abs().mean()
    assert err < 0.05, float(err)


METHOD_PARAMS = {
    "reconstruct": dict(prompt="a picture", steps=4),
    "pnp": dict(prompt="a blue picture", source_prompt="a red picture", steps=4),  # local blending too
    "drag": dict(points=[(12, 10, 20, 12)], lora_steps=2, drag_steps=2, steps=6),
    "quick-drag": dict(points=[(12, 10, 20, 12)], steps=6),
    "pix2pix-zero": dict(source_word="cat", target_word="dog", source_prompt="a cat", steps=3, reg_steps=1),
    "style-diffusion": dict(source_prompt="a cat", prompt="a red cat", steps=3, train_iters_scale=1),
    "diffuseit": dict(steps=6, skip=0.5, resample=1, cutouts=2),
}


@pytest.fixture(scope="module")
def aux_folder(tmp_path_factory):
    """Tiny CLIP and DINO bundled beside the model (as the demo ships them)."""
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    from tests.tiny import write_char_tokenizer

    root = tmp_path_factory.mktemp("aux")
    torch.manual_seed(1)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=64), add_pooling_layer=False).save_pretrained(root / "dino")
    CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
                         pad_token_id=513),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4), projection_dim=16)).save_pretrained(root / "clip")
    from transformers import CLIPTokenizer

    CLIPTokenizer.from_pretrained(write_char_tokenizer(root / "tok")).save_pretrained(root / "clip")
    return root


@pytest.mark.parametrize("method", sorted(METHOD_PARAMS))
def test_every_method_runs_on_every_family_and_keeps_outside_the_mask(family_model, aux_folder, method, tmp_path):
    from PIL import Image

    assert {m.name for m in all_methods()} >= set(METHOD_PARAMS)
    model = dataclasses.replace(family_model, root=aux_folder, model_id=f"{family_model.model_id}-{method}",
                                _text_cache={})
    src = _picture()
    params = dict(METHOD_PARAMS[method])
    if method == "diffuseit":
        style = tmp_path / "style.png"
        Image.fromarray(_picture(seed=4)[::-1].copy()).save(style)
        params["style_image"] = str(style)
    mask = np.zeros((32, 48), np.float32)
    mask[4:24, 6:30] = 1.0
    res = _engine_for(model).run(EditRequest(method, src, params, mask=mask))
    out = np.asarray(res.image)
    assert out.shape == src.shape
    assert np.array_equal(out[:, 36:], src[:, 36:]) and np.array_equal(out[28:], src[28:])
    assert res.passes["unet"] > 0
    if method == "pix2pix-zero":  # the official <= 0.01 on v-prediction models: a tenth of the step
        expected = params.get("xa_guidance", 0.1) * (0.1 if model.prediction_type == "v_prediction" else 1.0)
        assert res.info["xa_step"] == pytest.approx(expected)
    if method == "pnp":  # the changed words' blend runs on every family's text encoder(s) and attention
        assert 0.0 < res.info["local_blend"]["editable_share"] <= 1.0


def test_a_method_refuses_a_family_it_does_not_support(family_model):
    from core.registry import Method, register, _METHODS
    from core.methods.reconstruct.method import ReconstructParams, run

    register(Method(name="sd1-only", label="SD 1 only", params=ReconstructParams, run=run, stages=("invert",),
                    families=("sd1",)))
    try:
        calls = []
        engine = _engine_for(family_model)
        with pytest.raises(InvalidInput, match=f"{FAMILIES[family_model.family].label}"):
            engine.run(EditRequest("sd1-only", _picture(), {"steps": 2}), calls.append)
        assert not [c for c in calls if c.stage not in ("load",)]  # refused before any pass
    finally:
        _METHODS.pop("sd1-only", None)


# ---- folders and single files -----------------------------------------------------------------------------------

def test_a_diffusers_folder_of_each_family_loads(tmp_path):
    for family in FAMILY_NAMES:
        folder = save_tiny_family_model(tmp_path / family, family)
        spec = ModelSpec(str(folder), device="cpu", family="sd2" if family == "sd2" else "auto")
        model = load_model(spec)
        assert model.family == family and ("XL" in model.description) == (family == "sdxl")
        assert (model.text_encoder_2 is not None) == (family == "sdxl")
    assert detect_folder(tmp_path / "sdxl") == "sdxl"


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_checkpoint(request, tmp_path_factory):
    """A tiny model of the family written as one original-layout file, and a config folder laid out
    as the shipped ones are (component configs, no weights, no tokenizer: the shipped CLIP BPE)."""
    family = request.param
    root = tmp_path_factory.mktemp(f"single-{family}")
    unet, vae, te1, te2 = build_tiny_family_components(family, seed=5, vocab_size=49408)
    config = root / "config"
    for name, module in (("unet", unet), ("vae", vae)):
        (config / name).mkdir(parents=True)
        (config / name / "config.json").write_text(json.dumps(dict(module.config)))
    te1.config.save_pretrained(config / "text_encoder")
    if te2 is not None:
        te2.config.save_pretrained(config / "text_encoder_2")
    shutil.copytree(FAMILIES[family].config_dir / "scheduler", config / "scheduler")
    shutil.copy(FAMILIES[family].config_dir / "model_index.json", config / "model_index.json")
    checkpoint = root / f"tiny-{family}.safetensors"
    save_file(to_ldm_state_dict(unet, vae, te1, te2, family), str(checkpoint))
    reference = {"unet": unet, "vae": vae, "text_encoder": te1}
    if te2 is not None:
        reference["text_encoder_2"] = te2
    return family, config, checkpoint, reference


def test_single_file_of_each_family_loads_offline(family_checkpoint):
    family, config, checkpoint, reference = family_checkpoint
    assert detect_checkpoint(checkpoint) == family
    model = load_single_file(checkpoint, CPU, torch.float32, config_dir=config)
    assert model.family == family
    assert model.prediction_type == ("v_prediction" if family == "sd2" else "epsilon")
    assert_same_weights(model, reference)
    eps = load_single_file(checkpoint, CPU, torch.float32, config_dir=config,
                           spec=ModelSpec(str(checkpoint), prediction="epsilon"))
    assert eps.prediction_type == "epsilon"  # SD 2.x base (512 px) is epsilon: the user can say so


def test_real_sdxl_and_sd2_key_layout_from_the_shipped_configs(meta_components):
    """Names and shapes of released SDXL / SD 2.1 single files, from the shipped configs on the meta device."""
    def build(family):
        parts = meta_components[family]
        return to_ldm_state_dict(parts["unet"], parts["vae"], parts["text_encoder"], parts.get("text_encoder_2"),
                                 family)

    xl = build("sdxl")
    expected = {
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight": (640, 640),
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        SDXL_TEXT_PREFIXES[0] + "text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
        SDXL_TEXT_PREFIXES[1] + "text_projection": (1280, 1280),
        SDXL_TEXT_PREFIXES[1] + "transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
    }
    for key, shape in expected.items():
        assert tuple(xl[key].shape) == shape, key
    sd2 = build("sd2")
    assert tuple(sd2[SD2_TEXT_PREFIX + "transformer.resblocks.22.attn.in_proj_weight"].shape) == (3072, 1024)
    assert tuple(sd2["model.diffusion_model.input_blocks.1.1.proj_in.weight"].shape) == (320, 320)  # linear


def test_layer_maps_keep_sd15s_layers_and_pick_the_same_resolutions_on_sdxl(meta_components, tmp_path):
    import types

    from core.layer_maps import SD1_MAP, SDXL_MAP, layer_map
    from core.methods.drag.motion import feature_block, reference_blocks
    from core.methods.pnp.method import injection_plan
    from tools.random_models import build_random_sd15

    sd15 = build_random_sd15("meta")
    assert layer_map(sd15) is SD1_MAP
    by_name, by_depth = injection_plan(sd15.unet, SD1_MAP), injection_plan(sd15.unet)
    assert by_name.feature_name == by_depth.feature_name == "up_blocks.1.resnets.1.conv2"  # the paper's layer 4, its residual branch
    assert by_name.attention_layers == by_depth.attention_layers  # SD 1.5 behaves as before
    xl = types.SimpleNamespace(unet=meta_components["sdxl"]["unet"], family="sdxl")
    assert layer_map(xl) is SDXL_MAP
    plan = injection_plan(xl.unet, SDXL_MAP)
    assert plan.feature_name == "up_blocks.0.resnets.1.conv2"  # latent /4, as SD 1.x's up_blocks[1]
    assert feature_block(xl.unet, SDXL_MAP) is xl.unet.up_blocks[1]  # 640 channels, full latent size
    assert reference_blocks(xl.unet, SDXL_MAP) == {1}
    # the demo-like tiny SD 1 shape has no map: relative depth, as before
    from tests.tiny import build_tiny_model

    assert layer_map(build_tiny_model(tmp_path)) is None


def test_sdxl_vae_decodes_in_fp32_when_the_model_runs_in_fp16(tmp_path):
    from core.models import _finish
    from tests.tiny import SCHEDULER

    unet, vae, te1, te2 = build_tiny_family_components("sdxl")
    tok = build_tiny_family_model(tmp_path, "sdxl").tokenizer
    model = _finish("xl16", unet, vae, te1, tok, dict(SCHEDULER), CPU, torch.float16, None, family="sdxl",
                    text_encoder_2=te2, tokenizer_2=tok)
    assert model.unet.dtype == torch.float16 and model.vae.dtype == torch.float32
    sd2 = build_tiny_family_components("sd2")
    model = _finish("sd2-16", sd2[0], sd2[1], sd2[2], tok, dict(SCHEDULER), CPU, torch.float16, None, family="sd2")
    assert model.vae.dtype == torch.float16  # only SDXL's VAE overflows


def test_cli_json_names_the_family(tmp_path):
    from PIL import Image

    from editor_app.cli import main

    folder = save_tiny_family_model(tmp_path / "xl", "sdxl")
    Image.fromarray(_picture()).save(tmp_path / "in.png")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["reconstruct", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(folder),
                     "--device", "cpu", "--steps", "2", "--json", "--quiet"])
    assert code == 0, buf.getvalue()
    summary = json.loads(buf.getvalue())
    assert summary["family"] == "sdxl" and (tmp_path / "out.png").is_file()


def test_encoding_more_prompts_than_the_cache_holds(tmp_path):
    model = build_tiny_family_model(tmp_path, "sdxl")
    prompts = [f"a shape number {i}" for i in range(600)]  # the prompt cache keeps 512
    cond = model.encode_text(prompts)
    assert len(cond) == 600 and cond.pooled.shape[0] == 600
    torch.testing.assert_close(cond[599].embeds, model.encode_uncached([prompts[599]]).embeds)
