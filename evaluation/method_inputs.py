"""What each method is given from a benchmark sample, in one place.

A DragBench sample gives points, a prompt and a mask; a PIE-Bench sample gives a source prompt
(original_prompt without brackets), a target prompt (editing_prompt without brackets) and the swapped
words. Options given on the command line override these for every sample. `identity` is the
baseline: the input returned unchanged."""
from __future__ import annotations

from typing import Callable, Optional

from core.errors import InvalidInput

from .formats import DragSample, TextSample

IDENTITY = "identity"
TEXT_TO_IMAGE = "text-to-image"  # the control: the model drawing the sample's (target) prompt from noise
# the control of keeping: the input inverted and regenerated with its own caption, no edit; what the
# engine's inversion alone keeps on this model (a method reading the exact trajectory can keep more)
RECONSTRUCT = "reconstruct"


def _drag_inputs(s: DragSample) -> dict:
    return {"points": [list(p) for p in s.points], "prompt": s.prompt}


def _words(s: TextSample) -> dict:
    if not s.words:
        raise InvalidInput(f"sample {s.id}: neither blended_word nor the [bracketed] words name the source and "
                           "target words pix2pix-zero needs.")
    return {"source_word": s.words[0], "target_word": s.words[1], "source_prompt": s.source_prompt}


# benchmark kind -> method -> sample -> parameters
INPUTS: dict[str, dict[str, Callable]] = {
    "drag": {
        IDENTITY: lambda s: {},
        "drag": _drag_inputs,
        "quick-drag": _drag_inputs,
        RECONSTRUCT: lambda s: {"prompt": s.prompt},
    },
    "text": {
        IDENTITY: lambda s: {},
        RECONSTRUCT: lambda s: {"prompt": s.source_prompt},
        "pnp": lambda s: {"prompt": s.target_prompt, "source_prompt": s.source_prompt},
        "pix2pix-zero": _words,
        "style-diffusion": lambda s: {"source_prompt": s.source_prompt, "prompt": s.target_prompt},
        "diffuseit": lambda s: {"prompt": s.target_prompt, "source_prompt": s.source_prompt},
    },
}

# Methods that are given the sample's mask (DragBench's mask is part of the drag input; PIE-Bench's
# mask only scores the background, and its methods are run without it).
USES_MASK = {("drag", "drag"), ("drag", "quick-drag")}


def methods_for(kind: str) -> list[str]:
    return list(INPUTS[kind])


def check_method(kind: str, method: str) -> None:
    if method not in INPUTS[kind]:
        raise InvalidInput(f"--method {method} has no mapping from a {kind} sample: choose one of "
                           f"{', '.join(INPUTS[kind])}.")


def params_for(kind: str, method: str, sample, overrides: dict) -> dict:
    return {**INPUTS[kind][method](sample), **overrides}


def mask_for(kind: str, method: str, sample) -> Optional[object]:
    return sample.mask if (kind, method) in USES_MASK else None
