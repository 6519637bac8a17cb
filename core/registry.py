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
    label: str                # what the GUI shows, e.g. "Restyle (PnP)"
    params: type[MethodParams]
    run: Callable             # run(ctx: EditContext, params) -> MethodOutput
    stages: tuple[str, ...]   # progress stages in order
    description: str = ""
    needs: tuple[str, ...] = ()  # auxiliary models: "clip", "dino", "blip"
    uses_points: bool = False    # takes handle/target pairs from the canvas


_METHODS: dict[str, Method] = {}
_loaded = False


def register(method: Method) -> Method:
    _METHODS[method.name] = method
    return method


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("core.methods")


def get_method(name: str) -> Method:
    _ensure_loaded()
    if name not in _METHODS:
        raise InvalidInput(f"Unknown method '{name}': choose one of {', '.join(sorted(_METHODS))}.")
    return _METHODS[name]


def all_methods() -> list[Method]:
    _ensure_loaded()
    return list(_METHODS.values())
