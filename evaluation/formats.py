"""Reading benchmark folders in the published layouts, and the small encodings they use.

- DragBench (Shi et al.): any folder depth down to sample folders that hold `original_image.png`
  and `meta_data.pkl` (`{"prompt", "points", "mask"}`: points alternate handle, target as [x, y] in
  image pixels; mask HxW, 0/255 or 0/1, white = the region that may change).
- PIE-Bench (Ju et al.): `mapping_file.json` (one entry per sample: `image_path` under
  `annotation_images/`, `original_prompt`, `editing_prompt` with the edited words in [brackets],
  `editing_instruction`, `editing_type_id`, `blended_word`, `mask` as run-length pairs over the
  flattened image) beside the `annotation_images/` folder.
- ShapesBench (evaluation/shapesbench.py) writes both layouts, plus ground truth the real
  benchmarks lack: `truth.json`, `target_image.png` and `background.png` per sample.

Listing a benchmark never fails on one bad sample: `list_*` returns references, and `load()` on a
reference raises InvalidInput naming the sample, so a run can record it as a failed row and go on.
"""
from __future__ import annotations

import io
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.errors import InvalidInput
from core.images import load_image

DRAG_IMAGE = "original_image.png"
DRAG_META = "meta_data.pkl"
PIE_MAPPING = "mapping_file.json"
PIE_IMAGES = "annotation_images"
PIE_TRUTH = "ground_truth"
TRUTH_FILE = "truth.json"
TARGET_IMAGE = "target_image.png"
BACKGROUND_IMAGE = "background.png"


# ---- the restricted unpickler -------------------------------------------------------------------

# What a DragBench pickle needs: plain containers and scalars, and numpy arrays. Nothing that can
# call out (eval, getattr, os.system, __import__, …) is on the list, so a pickle that names any
# other global is refused before it runs anything.
_SAFE_BUILTINS = frozenset({"list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "str",
                            "bytes", "bytearray", "bool", "slice", "range"})
_SAFE_NUMPY = frozenset({
    (mod, name)
    for prefix in ("numpy.core", "numpy._core")
    for mod, name in ((f"{prefix}.multiarray", "_reconstruct"), (f"{prefix}.multiarray", "scalar"),
                      (f"{prefix}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"),
       ("_codecs", "encode")})  # protocols 0-2 spell bytes as _codecs.encode(str, "latin1")


class RefusedPickle(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS) or (module, name) in _SAFE_NUMPY:
            return super().find_class(module, name)
        raise RefusedPickle(f"it names {module}.{name}, which is not a builtin container or a numpy array")


def restricted_loads(data: bytes) -> Any:
    """Unpickle allowing only builtins and numpy arrays/dtypes; RefusedPickle for anything else."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def read_pickle(path: Path, what: str) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"{what}: cannot read {path.name} ({e.strerror or e}).") from None
    try:
        return restricted_loads(data)
    except RefusedPickle as e:
        raise InvalidInput(f"{what}: {path.name} was refused: {e}; a benchmark pickle holds only the prompt, "
                           "points and mask, so this file is not one (or was tampered with).") from None
    except Exception as e:  # a truncated or garbled pickle raises many types
        raise InvalidInput(f"{what}: {path.name} is not a readable pickle ({type(e).__name__}: {e}); "
                           "replace it with the benchmark's original file.") from None


# ---- run-length masks (PIE-Bench) -----------------------------------------------------------------

def rle_decode(pairs: Any, height: int, width: int) -> np.ndarray:
    """PIE-Bench's mask: a flat list start, length, start, length, … (or a list of [start, length]
    pairs) over the row-major flattened image -> bool HxW, True = edited region. Runs that overrun the
    image are clipped; anything that is not non-negative whole numbers is an error."""
    flat = list(pairs) if pairs is not None else []
    if flat and all(isinstance(p, (list, tuple)) for p in flat):
        flat = [v for p in flat for v in p]
    if len(flat) % 2:
        raise InvalidInput(f"the mask has {len(flat)} numbers; run-length masks are (start, length) pairs.")
    total = height * width
    out = np.zeros(total, bool)
    for i in range(0, len(flat), 2):
        start, length = flat[i], flat[i + 1]
        if isinstance(start, bool) or isinstance(length, bool) or not all(
                isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()) for v in (start, length)):
            raise InvalidInput(f"the mask's run {i // 2} ({start!r}, {length!r}) is not two whole numbers.")
        start, length = int(start), int(length)
        if start < 0 or length < 0:
            raise InvalidInput(f"the mask's run {i // 2} ({start}, {length}) is negative.")
        if start >= total:
            raise InvalidInput(f"the mask's run {i // 2} starts at {start}, past the {width}x{height} image.")
        out[start:min(total, start + length)] = True
    return out.reshape(height, width)


def rle_encode(mask: np.ndarray) -> list[int]:
    """bool HxW -> flat [start, length, …] over the row-major flattened mask (rle_decode's inverse)."""
    flat = np.concatenate([[0], np.asarray(mask, bool).reshape(-1).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flat))
    starts, ends = edges[0::2], edges[1::2]
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


# ---- samples ------------------------------------------------------------------------------------

@dataclass
class Truth:
    """ShapesBench's ground truth for one sample (absent on the real benchmarks)."""

    data: dict                      # truth.json
    target: np.ndarray              # RGB uint8: the scene as the edit should leave it
    background: np.ndarray          # RGB float32: the scene without its shapes


@dataclass
class DragSample:
    id: str                         # the sample folder, relative to the benchmark root
    group: str                      # its category (first folder level), "" at the root
    image: np.ndarray               # RGB uint8 HxWx3
    prompt: str
    points: list                    # [(hx, hy, tx, ty), …] in image pixels
    mask: Optional[np.ndarray]      # float32 HxW 0..1, 1 = may change; None when the sample has none
    truth: Optional[Truth] = None


@dataclass
class TextSample:
    id: str
    group: str                      # editing_type_id
    image: np.ndarray
    source_prompt: str              # original_prompt without brackets
    target_prompt: str              # editing_prompt without brackets
    words: tuple                    # (source word, target word) for word-swap methods, or ()
    instruction: str
    mask: Optional[np.ndarray]      # bool HxW, True = the region the edit is about
    truth: Optional[Truth] = None
    entry: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SampleRef:
    """A sample found in a benchmark, not read yet."""

    id: str
    kind: str                       # "drag" or "text"
    root: Path
    entry: Any = None               # PIE-Bench: the mapping entry

    def load(self):
        return load_drag_sample(self) if self.kind == "drag" else load_text_sample(self)


def _image(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InvalidInput(f"{what}: {path.name} is missing; each sample needs its image.")
    try:
        return load_image(path).rgb
    except InvalidInput as e:
        raise InvalidInput(f"{what}: {e}") from None


def _truth(folder: Path, what: str) -> Optional[Truth]:
    f = folder / TRUTH_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{what}: {TRUTH_FILE} is not valid JSON ({e}).") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{what}: {TRUTH_FILE} must hold an object.")
    target = _image(folder / TARGET_IMAGE, what)
    background = _image(folder / BACKGROUND_IMAGE, what).astype(np.float32)
    return Truth(data, target, background)


# ---- DragBench ------------------------------------------------------------------------------------

def _check_root(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"No benchmark folder at {root}: give the folder that holds the {what}.")
    return root


def list_drag_samples(root: Path) -> list[SampleRef]:
    """Every folder under `root` (any depth) that holds a DragBench sample file."""
    root = _check_root(root, "DragBench categories (or ShapesBench's drag/ folder)")
    folders = {p.parent for name in (DRAG_IMAGE, DRAG_META) for p in root.rglob(name)}
    if not folders:
        raise InvalidInput(f"{root} holds no DragBench samples (folders with {DRAG_IMAGE} and {DRAG_META}).")
    return [SampleRef(f.relative_to(root).as_posix() or ".", "drag", root) for f in sorted(folders)]


def _points(raw: Any, w: int, h: int, what: str) -> list:
    try:
        pts = [tuple(float(v) for v in np.asarray(p, dtype=float).reshape(-1)) for p in raw]
    except (TypeError, ValueError):
        raise InvalidInput(f"{what}: points must be a list of [x, y] pairs.") from None
    if not pts or len(pts) % 2 or any(len(p) != 2 for p in pts):
        raise InvalidInput(f"{what}: points must alternate handle, target as [x, y] pairs (got {len(pts)}).")
    pairs = [(*pts[i], *pts[i + 1]) for i in range(0, len(pts), 2)]
    for n, (hx, hy, tx, ty) in enumerate(pairs, 1):
        if not all(np.isfinite([hx, hy, tx, ty])) or min(hx, hy, tx, ty) < 0 or max(hx, tx) >= w or max(hy, ty) >= h:
            raise InvalidInput(f"{what}: point pair {n} ({hx:g}, {hy:g} -> {tx:g}, {ty:g}) is not on the "
                               f"{w}x{h} image.")
    return pairs


def _drag_mask(raw: Any, w: int, h: int, what: str) -> Optional[np.ndarray]:
    if raw is None:
        return None
    try:
        arr = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what}: the mask is not an array.") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.shape != (h, w):
        raise InvalidInput(f"{what}: the mask is {arr.shape[1] if arr.ndim == 2 else '?'}x{arr.shape[0]} but the "
                           f"image is {w}x{h}.")
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{what}: the mask holds non-finite values.")
    top = arr.max()
    if top <= 0:
        return None  # an empty mask: nothing drawn, the whole picture may change
    return np.clip(arr / (255.0 if top > 1 else 1.0), 0, 1)


def load_drag_sample(ref: SampleRef) -> DragSample:
    folder = ref.root / ref.id
    what = f"sample {ref.id}"
    image = _image(folder / DRAG_IMAGE, what)
    h, w = image.shape[:2]
    meta_path = folder / DRAG_META
    if not meta_path.is_file():
        raise InvalidInput(f"{what}: {DRAG_META} is missing; each DragBench sample needs its points.")
    meta = read_pickle(meta_path, what)
    if not isinstance(meta, dict) or "points" not in meta:
        raise InvalidInput(f"{what}: {DRAG_META} must hold a dict with 'prompt', 'points' and 'mask'.")
    prompt = meta.get("prompt") or ""
    if not isinstance(prompt, str):
        raise InvalidInput(f"{what}: the prompt in {DRAG_META} is not text.")
    group = ref.id.split("/")[0] if "/" in ref.id else ""
    return DragSample(ref.id, group, image, prompt, _points(meta["points"], w, h, what),
                      _drag_mask(meta.get("mask"), w, h, what), _truth(folder, what))


# ---- PIE-Bench ------------------------------------------------------------------------------------

PIE_KEYS = ("image_path", "original_prompt", "editing_prompt")


def list_text_samples(root: Path) -> list[SampleRef]:
    root = _check_root(root, f"{PIE_MAPPING} and {PIE_IMAGES}/ (PIE-Bench, or ShapesBench's text/ folder)")
    mapping = root / PIE_MAPPING
    if not mapping.is_file():
        raise InvalidInput(f"{root} holds no {PIE_MAPPING}: give the PIE-Bench folder (the one with "
                           f"{PIE_MAPPING} and {PIE_IMAGES}/).")
    try:
        data = json.loads(mapping.read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{mapping} is not valid JSON ({e}); restore the benchmark's original file.") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{mapping} must map sample ids to entries (a JSON object).")
    return [SampleRef(str(k), "text", root, v) for k, v in sorted(data.items())]


def strip_brackets(prompt: str) -> str:
    return " ".join(prompt.replace("[", " ").replace("]", " ").split())


def bracketed(prompt: str) -> str:
    return " ".join(" ".join(m.split()) for m in re.findall(r"\[([^\]]*)\]", prompt))


def swap_words(entry: dict) -> tuple:
    """(source word, target word): `blended_word` ("cat dog") when its two halves differ, else the
    bracketed words of the two prompts (PIE-Bench's attribute edits blend the object noun, "car car",
    while the brackets hold the attribute). () when neither says."""
    blended = str(entry.get("blended_word") or "").split()
    candidates = []
    if len(blended) >= 2 and len(blended) % 2 == 0:
        half = len(blended) // 2
        candidates.append((" ".join(blended[:half]), " ".join(blended[half:])))
    candidates.append((bracketed(str(entry.get("original_prompt", ""))), bracketed(str(entry.get("editing_prompt", "")))))
    for src, tgt in candidates:
        if src and tgt and src.lower() != tgt.lower():
            return src, tgt
    return ()


def load_text_sample(ref: SampleRef) -> TextSample:
    what = f"sample {ref.id}"
    entry = ref.entry
    if not isinstance(entry, dict):
        raise InvalidInput(f"{what}: its {PIE_MAPPING} entry is not an object.")
    missing = [k for k in PIE_KEYS if not isinstance(entry.get(k), str)]
    if missing:
        raise InvalidInput(f"{what}: its {PIE_MAPPING} entry lacks {', '.join(missing)}.")
    rel = Path(entry["image_path"])
    if rel.is_absolute() or ".." in rel.parts:
        raise InvalidInput(f"{what}: image_path {entry['image_path']!r} must be relative to {PIE_IMAGES}/.")
    image = _image(ref.root / PIE_IMAGES / rel, what)
    h, w = image.shape[:2]
    mask = None
    if entry.get("mask") is not None:
        try:
            mask = rle_decode(entry["mask"], h, w)
        except InvalidInput as e:
            raise InvalidInput(f"{what}: {e}") from None
        except TypeError:
            raise InvalidInput(f"{what}: the mask is not a list of run-length pairs.") from None
    truth = _truth(ref.root / PIE_TRUTH / ref.id, what)
    return TextSample(ref.id, str(entry.get("editing_type_id", "")), image, strip_brackets(entry["original_prompt"]),
                      strip_brackets(entry["editing_prompt"]), swap_words(entry),
                      str(entry.get("editing_instruction", "")), mask, truth, entry)
