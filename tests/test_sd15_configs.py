"""The shipped SD 1.5 configs describe the real architecture (checked by parameter counts)."""
import json

from diffusers import DDIMScheduler

from core.models import SD15_CONFIG_DIR
from tools.random_models import build_random_sd15, parameter_counts


def test_sd15_architecture_from_shipped_configs():
    model = build_random_sd15("meta")
    counts = parameter_counts(model)
    assert abs(counts["unet"] - 859_520_964) < 1e5, counts
    assert abs(counts["vae"] - 83_653_863) < 1e4, counts
    assert abs(counts["text_encoder"] - 123_060_480) < 1e4, counts
    assert next(model.unet.parameters()).device.type == "meta"
    assert model.native_size == 512 and model.grid == 64 and model.latent_channels == 4
    assert model.unet.config.cross_attention_dim == model.text_encoder.config.hidden_size == 768
    assert model.text_encoder.config.hidden_act == "quick_gelu"
    assert model.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_sd15_scheduler_and_index():
    s = DDIMScheduler.from_pretrained(SD15_CONFIG_DIR, subfolder="scheduler").config
    assert (s.beta_start, s.beta_end, s.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert s.clip_sample is False and s.set_alpha_to_one is False and s.steps_offset == 1
    assert s.prediction_type == "epsilon"
    index = json.loads((SD15_CONFIG_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (SD15_CONFIG_DIR / part).is_dir() and part in index
