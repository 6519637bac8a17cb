"""Device and precision: chosen automatically, overridable."""
from __future__ import annotations

import torch

from .errors import InvalidInput

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(requested: str | None = "auto") -> torch.device:
    req = (requested or "auto").lower()
    if req == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(req)
    except RuntimeError:
        raise InvalidInput(f"Unknown device '{requested}': use auto, cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("CUDA was requested but no CUDA GPU is available: use --device cpu or auto.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidInput("MPS was requested but is not available: use --device cpu or auto.")
    return dev


def pick_dtype(device: torch.device, requested: str | None = "auto") -> torch.dtype:
    req = (requested or "auto").lower()
    if req == "auto":
        # fp16 halves memory and is the format SD 1.x weights ship in; the CPU has no fast fp16.
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if req not in PRECISIONS:
        raise InvalidInput(f"Unknown precision '{requested}': use auto, fp32, fp16 or bf16.")
    if device.type == "cpu" and req == "fp16":
        raise InvalidInput("fp16 is not supported on the CPU: use --precision fp32 (or bf16).")
    return PRECISIONS[req]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in PRECISIONS.items()}[dtype]
