"""The single declaration of a method's parameters.

Each method declares one frozen dataclass whose fields carry their help text, range and widget
kind in `metadata`. From that declaration come the CLI flags (`add_arguments`), the GUI form
(`describe`), the JSON stored in project files (`to_dict` / `from_dict`) and validation.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import InvalidInput

# Widget/parse kinds a field may declare. "text" is a prompt-like string, "path" a file path,
# "points" a tuple of (handle x, handle y, target x, target y) in input-image pixels.
KINDS = ("int", "float", "bool", "str", "text", "choice", "path", "points")


def param(
    default: Any,
    help: str,
    *,
    label: str | None = None,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[str] | None = None,
    required: bool = False,
    advanced: bool = False,
    kind: str | None = None,
    cli: str | None = None,
) -> Any:
    """A dataclass field with the metadata every front end reads."""
    if kind is None:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "str")
        if choices:
            kind = "choice"
    assert kind in KINDS, kind
    meta = dict(help=help, label=label, min=min, max=max, choices=tuple(choices) if choices else None,
                required=required, advanced=advanced, kind=kind, cli=cli)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use immutable defaults (tuples) in parameter declarations")
    return field(default=default, metadata=meta)


def _meta(f: dataclasses.Field) -> dict:
    return dict(f.metadata)


def _label(f: dataclasses.Field) -> str:
    return f.metadata.get("label") or f.name.replace("_", " ").capitalize()


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("cli") or "--" + f.name.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class MethodParams:
    """Fields every method has. Subclasses redeclare `steps` to change its default."""

    steps: int = param(50, "Denoising steps (more is slower and closer to the input).", min=2, max=1000)
    seed: int = param(0, "Random seed: the same inputs and seed give the same result.", min=0, max=2**32 - 1)

    # ---- reflection -------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def describe(cls) -> list[dict]:
        """Everything a form or `methods --json` needs, one dict per field, common fields first."""
        out = []
        for f in cls.fields():
            m = _meta(f)
            out.append(dict(name=f.name, label=_label(f), type=m["kind"], default=_jsonable(f.default),
                            help=m["help"], min=m["min"], max=m["max"],
                            choices=list(m["choices"]) if m["choices"] else None,
                            required=m["required"], advanced=m["advanced"], flag=flag_name(f)))
        # The method's own fields first, then steps/seed, then the advanced ones (stable sort:
        # declaration order within each group).
        base = {f.name for f in dataclasses.fields(MethodParams)}
        out.sort(key=lambda d: (d["advanced"], d["name"] in base))
        return out

    # ---- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in self.fields()}

    @classmethod
    def from_dict(cls, values: dict, *, strict: bool = True) -> "MethodParams":
        """Build and validate from JSON-like values. Unknown keys are an error when strict."""
        known = {f.name: f for f in cls.fields()}
        unknown = sorted(set(values) - set(known))
        if unknown and strict:
            raise InvalidInput(f"Unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}.")
        kwargs = {k: coerce(known[k], v) for k, v in values.items() if k in known}
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def replace(self, **changes) -> "MethodParams":
        return self.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Raise InvalidInput naming the field and what a valid value looks like."""
        for f in self.fields():
            check_value(f, getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Cross-field checks; methods override."""


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def parse_point(text: str) -> tuple[float, float, float, float]:
    parts = [p for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise InvalidInput(f"Point '{text}' is not HX,HY,TX,TY (four numbers: handle x, y, target x, y).")
    return vals  # type: ignore[return-value]


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn a JSON/CLI/GUI value into the field's Python type, or raise InvalidInput."""
    kind = f.metadata["kind"]
    name = f.name
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            v = float(value)
            if not math.isfinite(v):
                raise ValueError
            return v
        if kind == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if kind == "points":
            if isinstance(value, str):
                value = [value]
            return tuple(parse_point(p) if isinstance(p, str) else parse_point(",".join(map(str, p)))
                         for p in value)
        if value is None:
            return ""
        return str(value)
    except InvalidInput:
        raise
    except (TypeError, ValueError):
        raise InvalidInput(f"Parameter {name}: {value!r} is not a valid {kind}.") from None


def check_value(f: dataclasses.Field, v: Any) -> None:
    m = f.metadata
    name = f.name
    if m["kind"] in ("int", "float"):
        lo, hi = m["min"], m["max"]
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            raise InvalidInput(f"Parameter {name}={v} is out of range; use a value in {rng}.")
    if m["kind"] == "choice" and v not in m["choices"]:
        raise InvalidInput(f"Parameter {name}={v!r}: choose one of {', '.join(m['choices'])}.")
    if m["required"] and (v is None or (isinstance(v, (str, tuple)) and not (v.strip() if isinstance(v, str) else v))):
        raise InvalidInput(f"Parameter {name} is required: {m['help']}")


def add_arguments(parser, cls: type[MethodParams], skip: Iterable[str] = ()) -> None:
    """Add one argparse option per field. Values stay None unless given, so defaults live only
    in the dataclass."""
    import argparse

    for f in cls.fields():
        if f.name in skip:
            continue
        m = f.metadata
        rng = ""
        if m["min"] is not None or m["max"] is not None:
            rng = f" Range {m['min']}..{m['max']}."
        # argparse %-formats help texts: a literal "%" (as in "70% of the schedule") must be doubled
        helptext = f"{m['help']}{rng} Default: {_jsonable(f.default)!r}.".replace("%", "%%")
        if m["kind"] == "bool":
            parser.add_argument(flag_name(f), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=helptext)
        elif m["kind"] == "points":
            parser.add_argument(flag_name(f), dest=f.name, action="append", default=None,
                                metavar="HX,HY,TX,TY", help=helptext + " Repeat for several pairs.")
        else:
            parser.add_argument(flag_name(f), dest=f.name, default=None,
                                choices=list(m["choices"]) if m["choices"] else None, help=helptext)


def from_namespace(cls: type[MethodParams], ns) -> MethodParams:
    values = {f.name: getattr(ns, f.name) for f in cls.fields()
              if getattr(ns, f.name, None) is not None}
    return cls.from_dict(values)
