"""The method registry: a method name maps to its parameter class and its run function."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .errors import InvalidInput
from .params import MethodParams


@dataclass(frozen=True)
class Method:
    name: str                 # CLI / project-file name, e.g. "pnp"
    # For people: "Plain name — one-line purpose (Paper)", e.g. "Restyle — keep the layout, change
    # the look (Plug-and-Play)". The GUI shows the parts apart (plain_name, purpose, paper).
    label: str
    params: type[MethodParams]
    run: Callable             # run(ctx: EditContext, params) -> MethodOutput
    stages: tuple[str, ...]   # progress stages in order
    description: str = ""
    needs: tuple[str, ...] = ()  # auxiliary models: "clip", "dino", "blip"
    uses_points: bool = False    # takes handle/target pairs from the canvas
    families: tuple[str, ...] = ("sd1", "sd2", "sdxl")  # model families it runs on (core/families.py)
    family_note: str = ""        # why a family is missing, for the refusal message and help text
    # Samplers it holds up with (core/schedule.py): few-step lcm/tcd only where measured to work.
    samplers: tuple[str, ...] = ("ddim",)
    diagnostic: bool = False     # an engine check, not an artist's edit (the GUI: Tools ▸ Diagnostics)

    @property
    def plain_name(self) -> str:
        """'Restyle': layer names ("Restyle 2") and messages."""
        return self.label.split(" — ")[0].split(" (")[0].strip()

    @property
    def purpose(self) -> str:
        """'keep the layout, change the look' ('' when the label has none)."""
        _, sep, rest = self.label.partition(" — ")
        return rest.rsplit(" (", 1)[0].strip() if sep else ""

    @property
    def paper(self) -> str:
        """'Plug-and-Play': the published method it implements ('' when the label names none)."""
        head, sep, tail = self.label.rpartition(" (")
        return tail[:-1].strip() if sep and tail.endswith(")") else ""


_METHODS: dict[str, Method] = {}
_loaded = False
# The order front ends list methods in; methods not named here
# follow in the order they were registered.
ORDER = ("reconstruct", "pnp", "drag", "quick-drag", "pix2pix-zero", "style-diffusion", "diffuseit")


def register(method: Method) -> Method:
    _METHODS[method.name] = method
    return method


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("core.methods").discover()


def rediscover() -> None:
    """Look for method folders again (a package added to core.methods.__path__ at run time)."""
    importlib.import_module("core.methods").discover()


def get_method(name: str) -> Method:
    _ensure_loaded()
    if name not in _METHODS:
        raise InvalidInput(f"Unknown method '{name}': choose one of {', '.join(sorted(_METHODS))}.")
    return _METHODS[name]


def all_methods() -> list[Method]:
    _ensure_loaded()
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(_METHODS.values(), key=lambda m: rank.get(m.name, len(ORDER)))
