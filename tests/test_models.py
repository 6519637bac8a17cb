"""Model loading: the embedded demo, folders, hub ids, single-file checkpoints, auxiliary encoders."""
import json
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.aux_models import load_aux
from core.errors import InvalidInput, ModelUnavailable
from core.models import DiffusionModel, ModelManager, ModelSpec, load_model, load_single_file
from resources import resource_path
from tools.convert_to_single_file import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, to_ldm_state_dict

DEMO = resource_path("models", "demo")
CPU = torch.device("cpu")


@pytest.fixture
def offline(monkeypatch):
    """No hub access: huggingface_hub refuses every HTTP request (it read HF_HUB_OFFLINE at import, so
    setting the variable alone would not stop a download attempt)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def demo() -> DiffusionModel:
    t = time.perf_counter()
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401  (imported by the app at start)
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401
    t1 = time.perf_counter()
    model = load_model(ModelSpec("demo", device="cpu"))
    print(f"\ndemo load: {time.perf_counter() - t1:.3f} s (imports before it: {t1 - t:.2f} s)")
    return model


def test_demo_loads_offline_with_its_components(demo, offline):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    assert isinstance(demo.unet, UNet2DConditionModel) and isinstance(demo.vae, AutoencoderKL)
    assert isinstance(demo.text_encoder, CLIPTextModel)
    assert demo.device == CPU and demo.dtype == torch.float32
    assert next(demo.unet.parameters()).dtype == torch.float32  # stored fp16, cast on load
    assert demo.native_size == 64 and demo.grid == 16 and demo.latent_channels == 4
    assert demo.native_size % demo.grid == 0
    assert demo.unet.config.cross_attention_dim == demo.text_encoder.config.hidden_size
    # SD 1.x's shape in miniature: cross-attention blocks around one plain block at the lowest resolution
    assert demo.unet.config.down_block_types[-1] == "DownBlock2D"
    assert demo.unet.config.up_block_types[0] == "UpBlock2D"
    assert all("CrossAttn" in b for b in demo.unet.config.down_block_types[:-1] + demo.unet.config.up_block_types[1:])
    assert demo.scheduler_config["_class_name"] == "DDIMScheduler" and demo.prediction_type == "epsilon"
    assert demo.tokenize(["a photo of a cat"])[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    rgb = json.loads((DEMO / "latent_rgb.json").read_text())
    assert demo.latent_rgb == rgb["factors"] and demo.latent_rgb_bias == rgb["bias"]
    assert not any(p.requires_grad for p in demo.unet.parameters())


def test_demo_weights_are_the_files(demo):
    """Every weight comes from the shipped file: none is left randomly initialised by a key mismatch."""
    for name, file in [("unet", "unet/diffusion_pytorch_model.safetensors"),
                       ("vae", "vae/diffusion_pytorch_model.safetensors"),
                       ("text_encoder", "text_encoder/model.safetensors")]:
        stored = load_file(DEMO / file)
        params = getattr(demo, name).state_dict()
        assert len(stored) == len([k for k in params if not k.endswith("position_ids")])
        for key, value in stored.items():
            loaded = params[key] if key in params else params[key.removeprefix("text_model.")]
            assert torch.equal(loaded.half(), value), (name, key)


def test_demo_denoises_20_steps_quickly_and_follows_the_prompt(demo):
    from diffusers import DDIMScheduler

    def generate(prompt):
        scheduler = DDIMScheduler.from_config(demo.scheduler_config)
        scheduler.set_timesteps(20)
        emb = demo.encode_text(["", prompt]).embeds
        size = demo.native_size // demo.vae_scale
        x = torch.randn(1, demo.latent_channels, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for t in scheduler.timesteps:
                uncond, cond = demo.unet(torch.cat([x, x]), t, emb).sample.chunk(2)
                x = scheduler.step(uncond + 7.5 * (cond - uncond), t, x).prev_sample
            return demo.decode_latents(x)

    t = time.perf_counter()
    cat = generate("a photo of a cat")
    print(f"\ndemo 20-step CFG denoise + decode: {time.perf_counter() - t:.3f} s")
    assert cat.shape == (1, 3, demo.native_size, demo.native_size) and torch.isfinite(cat).all()
    assert not torch.allclose(cat, generate("a painting of a dog"), atol=1e-4)
    assert torch.equal(cat, generate("a photo of a cat"))


def test_manager_keeps_the_model(demo):
    manager = ModelManager()
    first = manager.get(ModelSpec("demo", device="cpu"))
    assert manager.get(ModelSpec("demo", device="cpu")) is first and manager.current is first
    other = manager.get(ModelSpec("demo", device="cpu", precision="bf16"))
    assert other is not first and other.dtype == torch.bfloat16
    assert next(other.unet.parameters()).dtype == torch.bfloat16


def test_pickle_checkpoints_are_refused_unless_allowed(tmp_path):
    for suffix in (".ckpt", ".bin", ".pt"):
        f = tmp_path / f"model{suffix}"
        f.write_bytes(b"not really a pickle")
        with pytest.raises(InvalidInput, match="pickle"):
            load_model(ModelSpec(str(f)))
        # allowed, the file is read (and here found unreadable) instead of refused
        with pytest.raises(ModelUnavailable):
            load_model(ModelSpec(str(f), allow_pickle=True))


def test_folder_with_only_pickle_weights_is_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("clip", "dino"))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(InvalidInput, match="pickle"):
        load_model(ModelSpec(str(folder)))


@pytest.mark.parametrize("source", ["/nonexistent/model.safetensors", "/nonexistent/folder", "not a model",
                                    "./missing/model"])
def test_missing_models_are_unavailable(source):
    with pytest.raises(ModelUnavailable):
        load_model(ModelSpec(source))


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelUnavailable, match="model_index.json"):
        load_model(ModelSpec(str(tmp_path)))


def test_hub_id_offline_says_how_to_get_it(tmp_path, monkeypatch, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    t = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        load_model(ModelSpec("stable-diffusion-v1-5/stable-diffusion-v1-5"))
    assert time.perf_counter() - t < 10  # no network attempt
    msg = str(err.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg and "hf download" in msg and "HF_HUB_OFFLINE" in msg


def test_bundled_aux_encoders_load(demo, offline):
    from transformers import CLIPModel, ViTModel

    clip = load_aux("clip", demo, needed_by="DiffuseIT")
    assert isinstance(clip.model, CLIPModel) and clip.source == str(DEMO / "clip")
    assert clip.processor("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    size = clip.model.config.vision_config.image_size
    with torch.no_grad():
        image = clip.model.get_image_features(pixel_values=torch.randn(1, 3, size, size))
        text = clip.model.get_text_features(input_ids=torch.tensor([[49406, 320, 2368, 49407]]))
    image = getattr(image, "pooler_output", image)  # transformers 5 returns an output object
    text = getattr(text, "pooler_output", text)
    assert image.shape == text.shape == (1, clip.model.config.projection_dim)
    assert load_aux("clip", demo) is load_aux("clip", demo)

    dino = load_aux("dino", demo)
    assert isinstance(dino.model, ViTModel) and dino.source == str(DEMO / "dino")
    patch = dino.model.config.patch_size
    with torch.no_grad():
        out = dino.model(pixel_values=torch.randn(1, 3, 64, 64)).last_hidden_state
    assert out.shape == (1, 1 + (64 // patch) ** 2, dino.model.config.hidden_size)


# ---- single-file checkpoints --------------------------------------------------------------------

TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 block_out_channels=(16, 32, 32), attention_head_dim=2, cross_attention_dim=24, norm_num_groups=8)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(16, 32), sample_size=16)
TINY_TEXT = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=24, intermediate_size=48,
                 num_hidden_layers=2, num_attention_heads=2, hidden_act="quick_gelu")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny SD 1.x-shaped model: its config folder (no weights) and its weights as one
    original-layout .safetensors file."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(123)
    unet, vae = UNet2DConditionModel(**TINY_UNET), AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    config = root / "config"
    for name, module in (("unet", unet), ("vae", vae)):
        (config / name).mkdir(parents=True)
        (config / name / "config.json").write_text(json.dumps(dict(module.config)))
    text_encoder.config.save_pretrained(config / "text_encoder")
    shutil.copytree(resource_path("tokenizer", "clip"), config / "tokenizer")
    shutil.copytree(DEMO / "scheduler", config / "scheduler")
    shutil.copy(DEMO / "model_index.json", config / "model_index.json")
    checkpoint = root / "tiny.safetensors"
    save_file(to_ldm_state_dict(unet, vae, text_encoder), str(checkpoint))
    return config, checkpoint, {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def test_converted_keys_have_the_original_layout(tiny_checkpoint):
    _, checkpoint, _ = tiny_checkpoint
    keys = set(load_file(checkpoint))
    assert {k.split(".")[0] for k in keys} == {"model", "first_stage_model", "cond_stage_model"}
    for key in ["input_blocks.0.0.weight", "input_blocks.1.1.proj_in.weight", "input_blocks.3.0.op.weight",
                "input_blocks.7.0.in_layers.2.weight", "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
                "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "out.2.weight",
                "time_embed.0.weight"]:
        assert UNET_PREFIX + key in keys, key
    for key in ["encoder.down.0.downsample.conv.weight", "encoder.mid.attn_1.q.weight", "encoder.norm_out.weight",
                "decoder.up.1.upsample.conv.weight", "decoder.up.0.block.0.nin_shortcut.weight", "quant_conv.weight"]:
        assert VAE_PREFIX + key in keys, key
    assert TEXT_PREFIX + "text_model.embeddings.position_embedding.weight" in keys


def test_sd15_layout_matches_original_checkpoints():
    """Key names and shapes of real SD 1.5 checkpoints, from the shipped configs on the meta device."""
    from tools.random_models import build_random_sd15

    m = build_random_sd15("meta")
    sd = to_ldm_state_dict(m.unet, m.vae, m.text_encoder)
    assert len(sd) == 1130  # v1-5-pruned-emaonly: 686 UNet + 248 VAE + 196 text (+ position_ids)
    expected = {
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.11.0.out_layers.3.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.3.block.0.conv1.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key


def test_single_file_loads_offline_with_given_configs(tiny_checkpoint, offline):
    config, checkpoint, reference = tiny_checkpoint
    t = time.perf_counter()
    model = load_single_file(checkpoint, CPU, torch.float32, config_dir=config)
    print(f"\ntiny single-file load: {time.perf_counter() - t:.3f} s")
    assert model.native_size == 16 and model.grid == 8  # 8 latent px x VAE scale 2; x 4 UNet downsampling
    assert_same_weights(model, reference)


def assert_same_weights(model, reference: dict) -> None:
    """Every weight of the reference modules, bit for bit, in the loaded model; and the real tokenizer."""
    for name, module in reference.items():
        loaded = getattr(model, name).state_dict()
        for key, value in module.state_dict().items():
            if not key.endswith("position_ids"):
                assert torch.equal(loaded[key], value), (name, key)
    assert model.tokenize(["a photo of a cat"])[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_single_file_that_does_not_fit_the_configs(tiny_checkpoint, tmp_path, offline):
    _, checkpoint, _ = tiny_checkpoint
    with pytest.raises(ModelUnavailable):  # a tiny checkpoint against the SD 1.5 configs
        load_model(ModelSpec(str(checkpoint)))
    junk = tmp_path / "junk.safetensors"
    save_file({"foo": torch.zeros(2)}, str(junk))
    with pytest.raises(ModelUnavailable):
        load_model(ModelSpec(str(junk)))
