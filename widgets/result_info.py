"""An edit result's stored settings (its layer's metadata) as text for a tooltip."""
from __future__ import annotations

from core.registry import get_method

MAX_VALUE_CHARS = 60


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def describe_result(metadata: dict) -> str:
    """'Result of Restyle (Plug-and-Play)\\nPrompt: a cat\\nSteps: 20\\n…\\nmodel demo, 3.1 s'; '' when not a result."""
    name = metadata.get("method")
    if not name:
        return ""
    params = dict(metadata.get("params") or {})
    try:
        described = get_method(name).params.describe()
        method = get_method(name)
        title = f"{method.plain_name} ({method.paper})" if method.paper else method.plain_name
    except KeyError:  # a method this installation does not have: its raw names, still readable
        described = [dict(name=k, label=k, type="") for k in params]
        title = name
    lines = [f"Result of {title}"]
    for d in described:
        if d["name"] not in params:
            continue
        value = params[d["name"]]
        if d["type"] == "points" or d["name"] == "points":
            n = len(value or ())
            lines.append(f"{d['label']}: {n} pair{'s' if n != 1 else ''}")
        elif value not in (None, ""):
            lines.append(f"{d['label']}: {_value_text(value)}")
    tail = [str(metadata["model"]) if metadata.get("model") else "",
            f"{metadata['seconds']:.1f} s" if isinstance(metadata.get("seconds"), (int, float)) else ""]
    if any(tail):
        lines.append(", ".join(t for t in tail if t))
    lines.append("Right-click: Edit Again with These Settings")
    return "\n".join(lines)
