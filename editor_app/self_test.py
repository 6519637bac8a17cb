"""`malleable --self-test`: one demo edit, headless, to check that an installed build works.

It loads the shipped demo model through core, runs `reconstruct` on the shipped sample
resources/samples/shapes.png with a few steps, and checks the result. No Qt, no network, no GPU
needed; a few seconds on a CPU. Prints one line; returns 0 when the build works."""
from __future__ import annotations

import os
import sys
import time

SAMPLE = ("samples", "shapes.png")
STEPS = 4


def _check(src, out) -> str | None:
    """Why the output is wrong, or None."""
    import numpy as np

    if out.size != src.size:
        return f"output is {out.size[0]}x{out.size[1]}, input is {src.size[0]}x{src.size[1]}"
    arr = np.asarray(out.convert("RGB"), dtype=np.float32)
    if not np.isfinite(arr).all() or arr.std() < 2.0:
        return f"output is blank (pixel std {arr.std():.2f})"
    return None


def run_self_test() -> int:
    # The self-test must never reach a model hub: everything it needs ships with the app.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    try:
        from PIL import Image

        import core
        from resources import resource_path

        sample = resource_path(*SAMPLE)
        if not sample.is_file():
            raise FileNotFoundError(f"sample image missing: {sample}")
        with Image.open(sample) as im:
            src = im.copy()
        params = core.get_method("reconstruct").params(steps=STEPS)
        result = core.run(core.EditRequest("reconstruct", sample, params, model=core.ModelSpec("demo")))
        reason = _check(src, result.image)
    except Exception as e:  # any failure is a broken build: say what, in one line
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    if reason:
        print(f"malleable self-test: FAILED: {reason}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(f"malleable self-test: ok (reconstruct, demo model, {src.size[0]}x{src.size[1]}, "
          f"{STEPS} steps, {seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_self_test())
