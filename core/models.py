"""Loading diffusion models: the embedded demo, a Hugging Face repo id, a local diffusers folder or
a single-file .safetensors checkpoint. A loaded model is kept and reused (see ModelManager)."""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from resources import resource_path

from .conditioning import Conditioning
from .device import dtype_name, pick_device, pick_dtype
from .errors import InvalidInput, ModelUnavailable
from .families import FAMILIES, PREDICTIONS, Family, detect_checkpoint, detect_folder, get_family, load_tokenizer

log = logging.getLogger(__name__)


def _quiet_library_progress() -> None:
    """Weight loading is ours to report; the libraries' own tqdm bars would clutter stderr."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()

DEMO_ID = "demo"
DEFAULT_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_CONFIG_DIR = resource_path("configs", "stable-diffusion-v1-5")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
# Configs, tokenizer files and the full-precision safetensors weights only: a hub repo often also holds
# pickle copies, fp16 / non-EMA variants and other files several GB in size that would be wasted.
COMPONENT_PATTERNS = ["model_index.json", "scheduler/*.json", "tokenizer/*", "tokenizer_2/*"] + [
    f"{part}/{name}" for part in ("unet", "vae", "text_encoder", "text_encoder_2") for name in (
        "*.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model-*-of-*.safetensors",
        "model.safetensors", "model-*-of-*.safetensors")]

# SD 1.x latent -> RGB linear approximation (rows: latent channels; columns: R, G, B). Used for
# previews when a model ships no factors of its own.
SD1_LATENT_RGB = [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
]


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for. `source` is "demo", a repo id, a folder or a .safetensors file.
    `family` forces sd1/sd2/sdxl (auto: detected), `prediction` the UNet's parameterisation for a
    single file whose scheduler is unknown (auto: the family's default), `vae` a replacement VAE
    (a folder or hub id, e.g. an fp16-safe SDXL VAE), `loras` the user's LoRAs with their scales,
    `low_vram` keeps only the UNet on the GPU between uses and trades time for activation memory
    (core/offload.py), `revision` pins a hub download to a branch, tag or commit."""

    source: str = DEMO_ID
    device: str = "auto"
    precision: str = "auto"
    allow_pickle: bool = False
    family: str = "auto"
    prediction: str = "auto"
    vae: str = ""
    loras: tuple = ()
    low_vram: bool = False
    revision: str = ""

    def __post_init__(self) -> None:
        from .loras import LoraSpec

        items = []
        for item in self.loras or ():
            if isinstance(item, LoraSpec):
                items.append(item)
            elif isinstance(item, str):
                items.append(LoraSpec.parse(item))
            elif isinstance(item, dict):
                items.append(LoraSpec(str(item["path"]), float(item.get("scale", 1.0))))
            else:
                items.append(LoraSpec(str(item[0]), float(item[1]) if len(item) > 1 else 1.0))
        object.__setattr__(self, "loras", tuple(items))
        if self.family != "auto" and self.family not in FAMILIES:
            raise InvalidInput(f"Unknown model family '{self.family}': use auto, {', '.join(FAMILIES)}.")
        if self.prediction not in PREDICTIONS:
            raise InvalidInput(f"Unknown prediction type '{self.prediction}': use {', '.join(PREDICTIONS)}.")


@dataclass
class DiffusionModel:
    """The loaded components of one text-to-image latent diffusion model, on one device."""

    model_id: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    root: Optional[Path] = None  # folder holding the components, for auxiliary models
    latent_rgb: list = field(default_factory=lambda: SD1_LATENT_RGB)
    latent_rgb_bias: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    family: str = "sd1"
    text_encoder_2: Optional[torch.nn.Module] = None  # SDXL's second (OpenCLIP bigG) encoder
    tokenizer_2: object = None
    zero_empty_prompt: bool = False  # SDXL: the empty prompt is all zeros (force_zeros_for_empty_prompt)
    user_adapters: dict = field(default_factory=dict)  # the user's LoRA adapters: {name: scale}
    few_step: bool = False           # an LCM/TCD model or LoRA: the few-step samplers make sense
    low_vram: bool = False           # text encoders and VAE live on the CPU between uses (core/offload.py)
    _text_cache: dict = field(default_factory=dict, repr=False)

    # ---- geometry -----------------------------------------------------------------------------
    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def native_size(self) -> int:
        size = self.unet.config.sample_size
        if isinstance(size, (list, tuple)):  # some configs give (height, width)
            size = min(size)
        return int(size) * self.vae_scale

    @property
    def grid(self) -> int:
        """Pixel dimensions must be multiples of this: VAE downsampling times UNet downsampling."""
        return self.vae_scale * 2 ** (len(self.unet.config.down_block_types) - 1)

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    @property
    def family_info(self) -> Family:
        return FAMILIES[self.family]

    @property
    def description(self) -> str:
        return f"{self.model_id} ({self.family_info.label}) on {self.device.type} ({dtype_name(self.dtype)})"

    @property
    def text_width(self) -> int:
        """The width of the prompt embeddings cross-attention reads (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)."""
        width = int(self.text_encoder.config.hidden_size)
        if self.text_encoder_2 is not None:
            width += int(self.text_encoder_2.config.hidden_size)
        return width

    # ---- text -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str] | str) -> Conditioning:
        """The conditioning of each prompt ([B, 77, D] embeddings, and the pooled embedding where the
        family has one), cached per prompt (iterating must not re-encode)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        rows = {p: self._text_cache[p] for p in dict.fromkeys(prompts) if p in self._text_cache}
        missing = [p for p in dict.fromkeys(prompts) if p not in rows]
        if missing:
            cond = self.encode_uncached(missing)
            for k, p in enumerate(missing):
                rows[p] = self._text_cache[p] = cond[k]
            while len(self._text_cache) > 512:  # bounded: drop the oldest (this call's rows are kept above)
                self._text_cache.pop(next(iter(self._text_cache)))
        return Conditioning.cat([rows[p] for p in prompts])

    @torch.no_grad()
    def encode_uncached(self, prompts: list[str]) -> Conditioning:
        """Encode without the cache (sentence banks would flood it). One encoder: its last hidden
        state (SD 2.x's config already stops at OpenCLIP's penultimate layer). SDXL: the penultimate
        hidden states of both encoders side by side, the second's projected pooled output."""
        from .offload import encoders_on_device

        with encoders_on_device(self):
            return self._encode(prompts)

    def _encode(self, prompts: list[str]) -> Conditioning:
        fam = self.family_info
        encoders = [(self.tokenizer, self.text_encoder)]
        if self.text_encoder_2 is not None:
            encoders.append((self.tokenizer_2, self.text_encoder_2))
        hidden, pooled = [], None
        for (tok, enc), layer in zip(encoders, fam.hidden_layers):
            ids = self.tokenize(prompts, tok, enc).to(self.device)
            if layer == "last" and not fam.added_conditioning:
                hidden.append(enc(ids)[0])
                continue
            out = enc(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2] if layer == "penultimate" else out.hidden_states[-1])
            pooled = out[0]  # the last encoder's pooled (projected) embedding
        embeds = torch.cat(hidden, dim=-1).to(self.dtype)
        if pooled is not None:
            pooled = pooled.to(self.dtype)
        if self.zero_empty_prompt:
            empty = torch.tensor([not p.strip() for p in prompts], device=embeds.device)
            if bool(empty.any()):
                embeds = embeds.masked_fill(empty[:, None, None], 0.0)
                if pooled is not None:
                    pooled = pooled.masked_fill(empty[:, None], 0.0)
        return Conditioning(embeds, pooled if fam.added_conditioning else None)

    def tokenize(self, prompts: list[str], tokenizer=None, encoder=None) -> torch.Tensor:
        tokenizer = tokenizer or self.tokenizer
        encoder = encoder or self.text_encoder
        length = min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))
        tok = tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                        return_tensors="pt")
        return tok.input_ids

    # ---- latents ---------------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in -1..1 -> scaled latents (the distribution's mean: deterministic)."""
        image = image.to(self.device, self.vae.dtype)
        dist = self.vae.encode(image).latent_dist
        return (dist.mean * self.scaling_factor).float()

    def decode_latents(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Scaled latents -> [B,3,H,W] in -1..1 (float32). clamp=False keeps the decoder's raw range
        (losses that penalise out-of-range pixels, gradients that must not vanish at the clamp)."""
        out = self.vae.decode((latents / self.scaling_factor).to(self.vae.dtype)).sample
        return out.float().clamp(-1, 1) if clamp else out.float()


def _read_json(path: Path, what: str) -> dict:
    """A JSON object from a model folder, or ModelUnavailable saying which file is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelUnavailable(f"The model is incomplete: {what} {path} is missing.") from None
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        raise ModelUnavailable(f"The model is damaged: {what} {path} cannot be read "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None
    if not isinstance(data, dict):
        raise ModelUnavailable(f"The model is damaged: {what} {path} is not a JSON object.")
    return data


def _read_preview_factors(root: Path | None, channels: int) -> tuple[list, list] | None:
    """The model's own latent -> RGB preview factors (latent_rgb.json), when it ships them."""
    if root is None:
        return None
    f = root / "latent_rgb.json"
    if not f.is_file():
        return None
    data = _read_json(f, "the preview colours")
    factors, bias = data.get("factors"), data.get("bias", [0.0, 0.0, 0.0])

    def numbers(row, n):
        return (isinstance(row, list) and len(row) == n
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row))
    if not (isinstance(factors, list) and len(factors) == channels and all(numbers(r, 3) for r in factors)
            and numbers(bias, 3)):
        raise ModelUnavailable(f"The model is damaged: {f} must hold \"factors\" ({channels} rows of 3 numbers) "
                               "and \"bias\" (3 numbers); fix or delete the file.")
    return factors, bias


def read_scheduler_config(path: Path) -> dict:
    """The model's noise schedule, checked by building the DDIM scheduler from it now, so a damaged
    file is reported when the model loads and not as a crash in the middle of an edit."""
    from diffusers import DDIMScheduler

    config = _read_json(path, "the scheduler config")
    try:
        sched = DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=False)
        sched.set_timesteps(2)
    except Exception as e:  # diffusers raises many types for bad values
        raise ModelUnavailable(f"The model is damaged: the scheduler config {path} is not usable "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None
    return config


def _guard_pickle(folder: Path, allow_pickle: bool) -> None:
    if allow_pickle:
        return
    for sub in ("unet", "vae", "text_encoder"):
        d = folder / sub
        if d.is_dir() and not any(d.glob("*.safetensors")) and any(
                p.suffix in PICKLE_SUFFIXES for p in d.iterdir()):
            raise InvalidInput(
                f"{d} holds only pickle weights, which can run code when loaded. Convert them to "
                ".safetensors, or allow pickle files explicitly (--allow-pickle) if you trust the source.")


def transformers_dtype_kwargs(dtype: torch.dtype) -> dict:
    """transformers renamed `torch_dtype` to `dtype` (4.56); pass whichever this version understands."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them once, at import)."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "ON", "YES", "TRUE")


def load_folder(folder: Path, model_id: str, device: torch.device, dtype: torch.dtype,
                allow_pickle: bool = False, spec: Optional[ModelSpec] = None) -> DiffusionModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    spec = spec or ModelSpec(str(folder))
    _guard_pickle(folder, allow_pickle)
    family = get_family(spec.family if spec.family != "auto" else detect_folder(folder))
    needed = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]
    if family.text_encoders == 2:
        needed += ["text_encoder_2", "tokenizer_2"]
    missing = [s for s in needed if not (folder / s).is_dir()]
    if missing:
        raise ModelUnavailable(f"{folder} is not a diffusers {family.label} folder: missing {', '.join(missing)}. "
                               "Choose the folder that holds model_index.json.")
    sched = read_scheduler_config(folder / "scheduler" / "scheduler_config.json")  # before the weights: quick
    safetensors = None if allow_pickle else True
    tkw = dict(use_safetensors=safetensors, local_files_only=True, **transformers_dtype_kwargs(dtype))
    extra = {}
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype,
                                                    use_safetensors=safetensors, local_files_only=True)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype,
                                            use_safetensors=safetensors, local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", **tkw)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        if family.text_encoders == 2:
            extra["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2", **tkw)
            extra["tokenizer_2"] = CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise  # not a bad folder: the caller reports memory
    except Exception as e:  # damaged configs and weights raise OSError, ValueError, SafetensorError, …
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelUnavailable(f"Could not load the model in {folder}: {text}") from e
    index = _read_json_or_empty(folder / "model_index.json")
    extra["zero_empty_prompt"] = bool(index.get("force_zeros_for_empty_prompt", family.added_conditioning))
    return _finish(model_id, unet, vae, text_encoder, tokenizer, sched, device, dtype, folder,
                   family=family.name, spec=spec, **extra)


def load_single_file(path: Path, device: torch.device, dtype: torch.dtype,
                     config_dir: Optional[Path] = None, spec: Optional[ModelSpec] = None) -> DiffusionModel:
    """An original-layout checkpoint (what artists download), converted by diffusers using the
    component configs in `config_dir` (a diffusers-layout folder: model_index.json and one config per
    component; weights there are not needed and not read) — by default the ones shipped in
    resources/ for the checkpoint's family (detected from its tensor names), so no network is
    needed. Tokenizers come from the config folder when it has them, else the shipped CLIP BPE."""
    import diffusers

    path = Path(path)
    spec = spec or ModelSpec(str(path))
    family = get_family(spec.family if spec.family != "auto" else detect_checkpoint(path))
    config_dir = Path(config_dir) if config_dir is not None else family.config_dir
    if not (config_dir / "model_index.json").is_file():
        raise ModelUnavailable(f"{config_dir} holds no model_index.json: it cannot describe {path.name}.")
    pipeline = getattr(diffusers, family.pipeline)
    kwargs: dict = {}
    for k, sub in enumerate(("tokenizer", "tokenizer_2")[:family.text_encoders]):
        if not (config_dir / sub).is_dir():
            kwargs[sub] = load_tokenizer(family.pad_tokens[k])
    if family.pipeline == "StableDiffusionPipeline":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = pipeline.from_single_file(str(path), config=str(config_dir), local_files_only=True,
                                         torch_dtype=dtype, **kwargs)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise  # not a bad file: the caller reports memory
    except Exception as e:  # diffusers raises many types for malformed files
        raise ModelUnavailable(
            f"Could not read {path.name} as a {family.label} checkpoint: {str(e).splitlines()[0]}") from e
    sched = read_scheduler_config(config_dir / "scheduler" / "scheduler_config.json")
    extra = {}
    if family.text_encoders == 2:
        extra = dict(text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2, zero_empty_prompt=True)
    return _finish(str(path), pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched, device, dtype,
                   config_dir, family=family.name, spec=spec, **extra)


def _read_json_or_empty(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def load_vae(source: str, dtype: torch.dtype):
    """A replacement VAE: a folder (holding the VAE, or a model folder with vae/) or a hub id."""
    from diffusers import AutoencoderKL

    p = Path(source).expanduser()
    folder = p if p.is_dir() else None
    if folder is None:
        if source.count("/") != 1:
            raise ModelUnavailable(f"VAE '{source}' is neither a folder nor a Hugging Face repo id (owner/name).")
        folder = download_from_hub_generic(source)
    if (folder / "vae").is_dir():
        folder = folder / "vae"
    try:
        return AutoencoderKL.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelUnavailable(f"Could not load the VAE in {folder}: {str(e).splitlines()[0]}") from e


@dataclass(frozen=True)
class DownloadPlan:
    """What a hub download would fetch, from a dry run (no weights are downloaded)."""

    repo_id: str
    revision: Optional[str]
    files: int
    download_bytes: int      # still to fetch
    cached_bytes: int        # already in the cache
    free_bytes: int          # free space where the cache lives
    cache_dir: str

    @property
    def fits(self) -> bool:
        # 5 % slack: partial files and the filesystem's own bookkeeping
        return self.download_bytes <= self.free_bytes * 0.95

    def describe(self) -> str:
        gb = 1024 ** 3
        return (f"{self.repo_id}: {self.download_bytes / gb:.2f} GB to download in {self.files} files "
                f"({self.cached_bytes / gb:.2f} GB already cached), {self.free_bytes / gb:.1f} GB free in "
                f"{self.cache_dir}")


def plan_download(repo_id: str, revision: Optional[str] = None, patterns: Optional[list] = None) -> DownloadPlan:
    """A dry run of the download: sizes of the files still to fetch and the free disk space."""
    import shutil

    from huggingface_hub import constants, snapshot_download

    try:
        infos = snapshot_download(repo_id, revision=revision, allow_patterns=patterns or list(COMPONENT_PATTERNS),
                                  dry_run=True)
    except Exception as e:
        raise ModelUnavailable(
            f"Could not look up '{repo_id}'{f' at {revision}' if revision else ''} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Check the repo id, the revision and your internet "
            f"connection.") from e
    todo = sum(int(f.file_size or 0) for f in infos if f.will_download)
    cached = sum(int(f.file_size or 0) for f in infos if not f.will_download)
    cache_dir = Path(constants.HF_HUB_CACHE)
    probe = cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return DownloadPlan(repo_id, revision, len(infos), todo, cached, shutil.disk_usage(probe).free, str(cache_dir))


def download_from_hub(repo_id: str, progress: Optional[Callable[[int, int], None]] = None,
                      revision: Optional[str] = None) -> Path:
    """Local snapshot of a hub repo: the cache first, then — after a dry run that checks the disk has
    room — a download (diffusers components only), optionally pinned to a revision."""
    from huggingface_hub import snapshot_download

    patterns = list(COMPONENT_PATTERNS)
    try:
        cached = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=True))
        # the cache may hold only a few files of the repo (configs fetched by another tool)
        if all(any((cached / part).glob("*.safetensors")) for part in ("unet", "vae", "text_encoder")):
            return cached
    except Exception:
        pass
    if hub_offline():
        raise ModelUnavailable(
            f"'{repo_id}' is not in the local Hugging Face cache and offline mode is on (HF_HUB_OFFLINE is set). "
            f"Unset HF_HUB_OFFLINE and connect to the internet to download it on first use, or download it on "
            f"another machine (hf download {repo_id}) and choose its folder or a .safetensors file.")
    plan = plan_download(repo_id, revision, patterns)
    if not plan.fits:
        gb = 1024 ** 3
        raise ModelUnavailable(
            f"Not enough disk space to download {repo_id}: it needs {plan.download_bytes / gb:.1f} GB and "
            f"{plan.free_bytes / gb:.1f} GB are free in {plan.cache_dir}. Free some space, or set HF_HOME to a "
            f"disk with room.")
    kwargs = {}
    if progress is not None:
        kwargs["tqdm_class"] = _tqdm_reporting(progress)
        progress(0, plan.download_bytes)  # the size is known before the first byte arrives
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, **kwargs))
    except Exception as e:
        raise ModelUnavailable(
            f"Could not download '{repo_id}' ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Check the repo id and your internet connection and try again, or download it elsewhere "
            f"(hf download {repo_id}) and choose its folder or a .safetensors file.") from e


def download_from_hub_generic(repo_id: str) -> Path:
    """Local snapshot of any hub repo (an auxiliary encoder, a VAE); ModelUnavailable's message is a
    clause for the caller's sentence. Here beside download_from_hub, not in aux_models, so that
    models never imports aux_models (which imports models)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if hub_offline():
        raise ModelUnavailable(f"it is not in the local Hugging Face cache and offline mode is on (HF_HUB_OFFLINE "
                               f"is set): unset it and connect to the internet, or download '{repo_id}' "
                               f"elsewhere (hf download {repo_id}) and pass its folder")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise ModelUnavailable(f"could not download it ({type(e).__name__}); connect to the internet or "
                               f"download '{repo_id}' elsewhere and pass its folder") from e


def _tqdm_reporting(progress: Callable[[int, int], None]):
    from tqdm.auto import tqdm

    saw_bytes = [False]

    class ReportingTqdm(tqdm):
        """Forwards the download's byte counts to the caller (GUI progress bar, CLI). huggingface_hub
        also opens bars counting files; those are reported only while no byte bar exists."""

        def update(self, n=1):
            out = super().update(n)
            is_bytes = self.unit == "B" and not str(self.desc).startswith("Reconstructing")
            if is_bytes:
                saw_bytes[0] = True
            if is_bytes or not saw_bytes[0]:
                progress(int(self.n), int(self.total or 0))
            return out

    return ReportingTqdm


def _finish(model_id, unet, vae, text_encoder, tokenizer, sched, device, dtype, root, *, family: str = "sd1",
            spec: Optional[ModelSpec] = None, text_encoder_2=None, tokenizer_2=None,
            zero_empty_prompt: bool = False) -> DiffusionModel:
    fam = get_family(family)
    sched = dict(sched)
    if spec is not None and spec.prediction != "auto":
        sched["prediction_type"] = spec.prediction  # a single file's scheduler is the family's guess
    if spec is not None and spec.vae:
        vae = load_vae(spec.vae, dtype)
    modules = [unet, vae, text_encoder] + ([text_encoder_2] if text_encoder_2 is not None else [])
    for m in modules:
        m.requires_grad_(False)
        m.eval()
        p = next(m.parameters())
        if p.device != device or p.dtype != dtype:  # usually loaded in place already: skip the copy
            m.to(device=device, dtype=dtype)
    if (fam.vae_fp16_overflows and dtype == torch.float16 and not (spec is not None and spec.vae)
            and getattr(vae.config, "force_upcast", True)):
        vae.to(dtype=torch.float32)  # SDXL's VAE overflows in fp16; encode/decode follow vae.dtype
    model = DiffusionModel(model_id, unet, vae, text_encoder, tokenizer, sched, device, dtype,
                           Path(root) if root else None, family=fam.name, text_encoder_2=text_encoder_2,
                           tokenizer_2=tokenizer_2, zero_empty_prompt=zero_empty_prompt)
    factors = _read_preview_factors(model.root, model.latent_channels)
    if factors:
        model.latent_rgb, model.latent_rgb_bias = factors
    elif model.latent_channels != 4:
        # No factors for this latent space: a neutral grey projection still shows structure.
        model.latent_rgb = [[1.0 / model.latent_channels] * 3] * model.latent_channels
    return model


def load_model(spec: ModelSpec, progress: Optional[Callable[[int, int], None]] = None) -> DiffusionModel:
    """The model `spec` names, with the user's LoRAs applied and the low-VRAM placement set up."""
    from .loras import apply_loras, lora_suffix
    from .offload import enable_low_vram

    suffix = lora_suffix(spec.loras, spec.allow_pickle)  # bad LoRA files fail before any weights load
    model = _load_base(spec, progress)
    if spec.loras:
        model.user_adapters = apply_loras(model, spec.loras, spec.allow_pickle)
        model.model_id += suffix
    model.few_step = is_few_step(model, spec)
    if spec.low_vram:
        enable_low_vram(model)
    return model


FEW_STEP_NAMES = ("lcm", "tcd", "lightning", "turbo", "hyper")


def is_few_step(model: DiffusionModel, spec: ModelSpec) -> bool:
    """Whether the model is meant for few-step sampling: an LCM-distilled UNet (it takes a guidance
    embedding), a few-step scheduler in its config, or a LoRA named like one (LCM-LoRA files carry
    no other mark; the samplers stay available for any model from the command line)."""
    if getattr(model.unet.config, "time_cond_proj_dim", None):
        return True
    if str(model.scheduler_config.get("_class_name", "")).startswith(("LCM", "TCD")):
        return True
    return any(any(n in Path(l.path).name.lower() for n in FEW_STEP_NAMES) for l in spec.loras)


def _load_base(spec: ModelSpec, progress: Optional[Callable[[int, int], None]] = None) -> DiffusionModel:
    _quiet_library_progress()
    device = pick_device(spec.device)
    dtype = pick_dtype(device, spec.precision)
    src = (spec.source or DEMO_ID).strip()
    if src == DEMO_ID:
        folder = resource_path("models", "demo")
        if not (folder / "unet").is_dir():
            raise ModelUnavailable("The demo model is missing from resources/models/demo: reinstall Malleable.")
        return load_folder(folder, DEMO_ID, device, dtype, spec=spec)
    path = Path(src).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not spec.allow_pickle:
            raise InvalidInput(f"{path.name} is a pickle checkpoint, which can run code when loaded. Use a "
                               ".safetensors file, or allow pickle files explicitly if you trust the source.")
        if not path.is_file():
            raise ModelUnavailable(f"No model file at {path}.")
        return load_single_file(path, device, dtype, spec=spec)
    if path.suffix.lower() == ".safetensors":
        if not path.is_file():
            raise ModelUnavailable(f"No model file at {path}: check the path.")
        return load_single_file(path, device, dtype, spec=spec)
    if path.is_dir():
        return load_folder(path, str(path), device, dtype, spec.allow_pickle, spec)
    if src.count("/") == 1 and not src.startswith((".", "/", "~")):
        folder = download_from_hub(src, progress, revision=spec.revision or None)
        model_id = f"{src}@{spec.revision}" if spec.revision else src
        return load_folder(folder, model_id, device, dtype, spec.allow_pickle, spec)
    raise ModelUnavailable(f"'{src}' is neither 'demo', a model folder, a .safetensors file nor a "
                           "Hugging Face repo id (owner/name).")


def _lora_files_key(loras) -> tuple:
    """The LoRA set as the manager compares it: paths, scales and each file's size and time (a file
    replaced on disk reloads; hashing contents happens once, at load)."""
    out = []
    for spec in loras:
        p = Path(spec.path).expanduser()
        try:
            st = p.stat()
            out.append((str(p), spec.scale, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), spec.scale, None, None))
    return tuple(out)


class ModelManager:
    """Keeps the most recently used model resident, so iterating never reloads weights."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[tuple] = None
        self._model: Optional[DiffusionModel] = None
        self.loads = 0  # weights actually loaded (not reused): batch workers report it per row

    def get(self, spec: ModelSpec, progress=None) -> DiffusionModel:
        device = pick_device(spec.device)
        key = (spec.source, str(device), pick_dtype(device, spec.precision), spec.allow_pickle, spec.family,
               spec.prediction, spec.vae, spec.low_vram, spec.revision, _lora_files_key(spec.loras))
        with self._lock:
            if self._key != key or self._model is None:
                self._model = None  # free the old weights before loading the new ones
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self._model = load_model(spec, progress)
                self._key = key
                self.loads += 1
            return self._model

    @property
    def current(self) -> Optional[DiffusionModel]:
        return self._model
