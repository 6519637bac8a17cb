"""What a batch will do, decided before any model loads: the images (a folder, optionally recursive
and filtered by a glob, or the lines of a jobs file), each one's parameters (the command line's,
then its sidecar `NAME.json`, then its jobs line), its seed and its output path.

Structural mistakes (no such folder, an unreadable jobs file, two images writing one output, an
output that would overwrite an input) raise `PlanError` before anything runs: the CLI's exit 2.
A mistake in one image's own values (a sidecar that is not JSON, an unknown or out-of-range field)
makes that item carry its error: it becomes a failed manifest row, and the rest of the batch runs.

Every item is plain data (`to_dict`/`from_dict`), so it can travel to a worker on another machine."""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Optional

from ..errors import InvalidInput, MalleableError
from ..formats import IMAGE_EXTENSIONS, OUTPUT_FORMATS
from ..models import ModelSpec
from ..params import check_value, coerce, flag_name
from ..registry import get_method
from ..request import EditRequest, check_sampler

SIDECAR_SUFFIX = ".json"
MANIFEST_NAME = "manifest.jsonl"
# Keys a sidecar or jobs line may hold besides the method's own fields.
MASK_KEY = "mask"
JOB_KEYS = ("image", "output")  # jobs lines only: which input, and (optionally) which output name


class PlanError(InvalidInput):
    """The batch as a whole cannot run (exit 2 before anything runs)."""


def derive_seed(base_seed: int, relative_path: str) -> int:
    """A seed for one image from the batch's seed and the image's path relative to INPUT_DIR: the
    same image gets the same seed whatever the order, the worker or the other images."""
    digest = hashlib.sha256(f"{int(base_seed)}\0{relative_path}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")  # 0 .. 2**32-1, the seed field's range


@dataclass(frozen=True)
class BatchSpec:
    """What every image of the batch shares. `params` are the command line's method values: checked
    one by one here, and completed per image by its sidecar or jobs line."""

    method: str
    input_dir: str
    output_dir: str
    params: Mapping[str, Any] = field(default_factory=dict)
    model: ModelSpec = field(default_factory=ModelSpec)
    mask: str = ""               # one mask for every image; a sidecar's "mask" replaces it
    output_suffix: str = ".png"  # the output format, as its extension
    redo: bool = False           # re-run images whose output exists (default: skip them)
    sampler: str = "ddim"        # EditRequest.sampler

    def __post_init__(self) -> None:
        method = get_method(self.method)  # InvalidInput for an unknown method
        object.__setattr__(self, "method", method.name)
        object.__setattr__(self, "input_dir", str(Path(self.input_dir).absolute()))
        object.__setattr__(self, "output_dir", str(Path(self.output_dir).absolute()))
        suffix = self.output_suffix.lower()
        suffix = suffix if suffix.startswith(".") else "." + suffix
        if suffix not in OUTPUT_FORMATS:
            raise PlanError(f"Unknown output format {self.output_suffix!r}: use "
                            f"{', '.join(s[1:] for s in OUTPUT_FORMATS)}.")
        object.__setattr__(self, "output_suffix", suffix)
        values = check_values(method.params, _normalise_keys(dict(self.params)))
        object.__setattr__(self, "params", _resolve_paths(method.params, values, Path.cwd()))
        if self.mask:
            object.__setattr__(self, "mask", str(Path(self.mask).expanduser().absolute()))
        object.__setattr__(self, "model", _absolute_model_paths(self.model))
        check_sampler(method, self.sampler)

    def request(self, item: "BatchItem", image) -> EditRequest:
        """The EditRequest for one item, as a single `malleable-edit` run would build it."""
        return EditRequest(self.method, image, dict(item.params), mask=item.mask or None, model=self.model,
                           sampler=self.sampler)

    @property
    def manifest_path(self) -> Path:
        return Path(self.output_dir) / MANIFEST_NAME

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["params"] = dict(self.params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "BatchSpec":
        return cls(**{**d, "model": ModelSpec(**d["model"])})


@dataclass(frozen=True)
class BatchItem:
    """One image's job: its names relative to INPUT_DIR and OUTPUT_DIR (posix), its complete,
    validated parameters (seed included), its mask, or the error that keeps it from running."""

    image: str
    output: str
    params: Mapping[str, Any] = field(default_factory=dict)
    mask: str = ""
    error_kind: str = ""
    error: str = ""

    def source(self, spec: BatchSpec) -> Path:
        return Path(spec.input_dir) / self.image

    def destination(self, spec: BatchSpec) -> Path:
        return Path(spec.output_dir) / self.output

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "BatchItem":
        return cls(**d)


# ---- checking values ---------------------------------------------------------------------------------

def _absolute_model_paths(model: ModelSpec) -> ModelSpec:
    """A model folder or file and LoRA files given relative to here, made absolute: workers on a
    cluster start elsewhere (a hub id such as org/name stays as it is unless it exists here)."""
    def absolute(p: str) -> str:
        return str(Path(p).expanduser().absolute()) if p and Path(p).expanduser().exists() else p

    loras = tuple(dataclasses.replace(lora, path=absolute(lora.path)) for lora in model.loras)
    return dataclasses.replace(model, source=absolute(model.source), vae=absolute(model.vae), loras=loras)

def _normalise_keys(values: Mapping) -> dict:
    """Sidecars may spell fields as flags do (`source-prompt`)."""
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def check_values(cls, values: Mapping) -> dict:
    """Each given value parsed and checked against its range and choices (as JSON values); a
    required field may still come from every image's sidecar."""
    known = {f.name: f for f in cls.fields()}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidInput(f"Unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}.")
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        f = known[name]
        v = coerce(f, value)
        check_value(SimpleNamespace(name=f.name, metadata={**f.metadata, "required": False}), v)
        out[name] = json.loads(json.dumps(v))  # tuples as lists: the spec travels as JSON
    return out


def _resolve_paths(cls, values: Mapping, base: Path) -> dict:
    """Path fields relative to `base` become absolute, so a worker elsewhere reads the same file."""
    out = dict(values)
    for f in cls.fields():
        value = out.get(f.name)
        if f.metadata["kind"] == "path" and isinstance(value, str) and value.strip():
            out[f.name] = str((base / Path(value.strip()).expanduser()).absolute())
    return out


# ---- finding the images ------------------------------------------------------------------------------

def discover(input_dir: Path, recursive: bool = False, glob: str = "",
             exclude: Optional[Path] = None) -> list[str]:
    """Supported pictures in INPUT_DIR (relative posix paths, sorted). Hidden files and folders
    (`.DS_Store`, macOS `._name.jpg` copies) are skipped, and so is `exclude` (an OUTPUT_DIR inside
    INPUT_DIR, so a re-run never edits its own outputs)."""
    found = []
    exclude = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(input_dir):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or (here / d).resolve() != exclude))
        if not recursive:
            dirs[:] = []
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = (here / name).relative_to(input_dir).as_posix()
            if glob and not (fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(name, glob)):
                continue
            found.append(rel)
    return found


def read_jobs(path: Path, input_dir: Path) -> list[tuple[str, dict, Optional[str]]]:
    """The lines of a jobs file: (image relative to INPUT_DIR, its values, its output name or None).
    Blank lines and lines starting with # are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(f"Cannot read the jobs file {path}: {getattr(e, 'strerror', None) or e}.") from None
    jobs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {number}"
        try:
            values = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlanError(f"{where} is not JSON ({e.msg}): write one object per line.") from None
        if not isinstance(values, dict) or not isinstance(values.get("image"), str) or not values["image"]:
            raise PlanError(f'{where} has no "image": give the picture\'s path relative to INPUT_DIR.')
        rel = _inside(input_dir, values.pop("image"), where, "image")
        output = values.pop("output", None)
        if output is not None and (not isinstance(output, str) or not output.strip()):
            raise PlanError(f'{where}: "output" must be a file name relative to OUTPUT_DIR.')
        jobs.append((rel, values, output))
    if not jobs:
        raise PlanError(f"The jobs file {path} has no job: write one JSON object per line.")
    return jobs


def _inside(folder: Path, name: str, where: str, what: str) -> str:
    """`name` as a posix path relative to `folder`, refusing one that leaves it."""
    p = Path(name)
    full = (p if p.is_absolute() else folder / p).resolve()
    try:
        return full.relative_to(folder.resolve()).as_posix()
    except ValueError:
        raise PlanError(f"{where}: the {what} {name!r} is outside {folder}.") from None


def read_sidecar(image: Path) -> Optional[dict]:
    """`NAME.json` beside `NAME.ext`, or None. Raises InvalidInput for one that is not a JSON object."""
    path = image.with_suffix(SIDECAR_SUFFIX)
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"The sidecar {path.name} is not readable JSON ({type(e).__name__}: "
                           f"{getattr(e, 'msg', e)}).") from None
    if not isinstance(values, dict):
        raise InvalidInput(f"The sidecar {path.name} must hold one JSON object of parameters.")
    return values


# ---- the plan ------------------------------------------------------------------------------------------

def plan(spec: BatchSpec, *, recursive: bool = False, glob: str = "", jobs: Optional[Path] = None) -> list[BatchItem]:
    """Every item of the batch, in a stable order. Raises PlanError when the batch cannot run."""
    method = get_method(spec.method)
    input_dir, output_dir = Path(spec.input_dir), Path(spec.output_dir)
    if not input_dir.is_dir():
        raise PlanError(f"INPUT_DIR {input_dir} is not a folder.")
    if output_dir.exists() and not output_dir.is_dir():
        raise PlanError(f"OUTPUT_DIR {output_dir} is a file: give a folder for the results.")
    if output_dir.resolve() == input_dir.resolve():
        raise PlanError("OUTPUT_DIR is INPUT_DIR: give another folder, so no input is overwritten.")

    if jobs is not None:
        entries = read_jobs(jobs, input_dir)
    else:
        inside = output_dir.resolve().is_relative_to(input_dir.resolve())
        entries = [(rel, None, None) for rel in discover(input_dir, recursive, glob,
                                                         exclude=output_dir if inside else None)]
    if not entries:
        where = f"{input_dir}" + (" or its subfolders" if recursive else "")
        raise PlanError(f"No picture to edit in {where}" + (f" matching {glob!r}" if glob else "")
                        + f" ({', '.join(IMAGE_EXTENSIONS)}).")

    planned = [_item(method, spec, rel, line, output) for rel, line, output in entries]
    if jobs is None:  # a mask or style picture kept in INPUT_DIR is an input of the edits, not one to edit
        used = _referenced_files(method, spec, [item for item, _ in planned])
        planned = [(item, given) for item, given in planned if str(item.source(spec).resolve()) not in used]
    items = [item for item, _ in planned]
    _check_outputs(spec, items)
    _check_required(method, spec, set().union(*(given for _, given in planned)))
    return items


def _item(method, spec: BatchSpec, rel: str, line: Optional[dict],
          output: Optional[str]) -> tuple[BatchItem, set[str]]:
    """The item, and the names of the fields its sidecar and jobs line give."""
    input_dir = Path(spec.input_dir)
    source = input_dir / rel
    if output is None:
        out_rel = Path(rel).with_suffix(spec.output_suffix).as_posix()
    else:
        out_rel = _inside(Path(spec.output_dir), output, f"the job for {rel}", "output")
        if Path(out_rel).suffix.lower() not in OUTPUT_FORMATS:
            out_rel += spec.output_suffix
    values = dict(spec.params)
    mask = spec.mask
    given: set[str] = set()
    try:
        layers = []
        sidecar = read_sidecar(source)
        if sidecar is not None:
            layers.append((_normalise_keys(sidecar), source.parent))
        if line:
            layers.append((_normalise_keys(line), input_dir))
        explicit_seed = False
        for layer, base in layers:
            if MASK_KEY in layer:
                m = layer.pop(MASK_KEY)
                mask = str((base / Path(str(m)).expanduser()).absolute()) if m else ""
            explicit_seed = explicit_seed or "seed" in layer
            given |= set(layer)
            values.update(_resolve_paths(method.params, layer, base))
        if not explicit_seed:
            base_seed = coerce(_seed_field(method), values.get("seed", _seed_field(method).default))
            values["seed"] = derive_seed(base_seed, rel)
        params = method.params.from_dict(values).to_dict()
    except MalleableError as e:
        return BatchItem(rel, out_rel, mask=mask, error_kind=e.kind, error=str(e)), given
    return BatchItem(rel, out_rel, params, mask), given


def _seed_field(method) -> dataclasses.Field:
    return next(f for f in method.params.fields() if f.name == "seed")


def _referenced_files(method, spec: BatchSpec, items: list[BatchItem]) -> set[str]:
    """Masks and path fields (a style image) the items read, resolved."""
    paths = {f.name for f in method.params.fields() if f.metadata["kind"] == "path"}
    used = {item.mask for item in items if item.mask} | ({spec.mask} if spec.mask else set())
    for item in items:
        used |= {v for k, v in item.params.items() if k in paths and isinstance(v, str) and v}
    return {str(Path(p).resolve()) for p in used}


def _check_outputs(spec: BatchSpec, items: list[BatchItem]) -> None:
    """No two items write one file (`a.jpg` and `a.png` both become `a.png`), and no output is an
    input of the batch."""
    seen: dict[str, str] = {}
    for item in items:
        key = item.output.casefold()  # case-insensitive file systems (macOS, Windows) collide too
        if key in seen:
            raise PlanError(f"{seen[key]} and {item.image} would both write {item.output}: rename one, "
                            "or name the outputs in a --jobs file.")
        seen[key] = item.image
    inputs = {str(item.source(spec).resolve()) for item in items}
    inputs |= {str(Path(item.mask).resolve()) for item in items if item.mask}
    for item in items:
        if str(item.destination(spec).resolve()) in inputs:
            raise PlanError(f"The output {item.output} would overwrite an input of the batch: choose "
                            "another OUTPUT_DIR.")


def _check_required(method, spec: BatchSpec, given: set[str]) -> None:
    """A required field given neither on the command line nor by any image is bad usage, not a
    batch of failures."""
    for f in method.params.fields():
        if f.metadata["required"] and spec.params.get(f.name) in (None, "", ()) and f.name not in given:
            raise PlanError(f"{flag_name(f)} is required ({f.metadata['help']}): give it on the command line "
                            "or in every image's sidecar.")
