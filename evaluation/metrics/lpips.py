"""LPIPS (Zhang et al., 2018) with AlexNet, as DragBench's Image Fidelity (1 - LPIPS at 224 x 224)
and PIE-Bench's background LPIPS use it, from the `lpips` package (pip install lpips), and only
when its AlexNet weights are already on this machine: an evaluation never downloads. Otherwise the
measure is reported as unavailable (null), with the reason."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, which lpips builds on
IF_SIDE = 224


def alexnet_cached() -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE).is_file()


def load_lpips(device: torch.device) -> tuple[Optional[Callable], str]:
    """(lpips(a, b, side=None) -> float, "") or (None, why it is unavailable)."""
    try:
        import lpips  # noqa: PLC0415 - optional
    except ImportError:
        return None, "the lpips package is not installed (pip install lpips)"
    if not alexnet_cached():
        return None, (f"AlexNet's weights ({ALEXNET_FILE}) are not in the torch hub cache "
                      f"({Path(torch.hub.get_dir()) / 'checkpoints'}); evaluations never download")
    try:
        net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception as e:  # a broken install: say so, keep the run going
        return None, f"lpips could not be loaded ({type(e).__name__}: {e})"

    @torch.no_grad()
    def distance(a: np.ndarray, b: np.ndarray, side: Optional[int] = None) -> float:
        def prep(x):
            t = torch.tensor(np.asarray(x, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
            if side:
                t = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
            return t.to(device)
        return float(net(prep(a), prep(b)).reshape(-1)[0])

    return distance, ""
