"""Seeded fuzzing of the file readers: mutated .ora projects through editor_app.ora.read_ora and
mutated pictures through core.images: load_image (the engine's loader) and load_rgba (the editor's).

    python -m tools.fuzz_files                       # 600 projects, 600 pictures, seed 0
    python -m tools.fuzz_files --ora 2000 --images 2000 --seed 7

Prints one JSON object: mutants per reader, what came out (ok, the project's own error, a raw
exception: its type and a sample), the slowest case in seconds. A raw exception or a case slower
than --bound seconds is a bug; the command exits 1 when there is one. The test suite runs a few
hundred of the same mutants (tests/test_fuzz_files.py)."""
from __future__ import annotations

import argparse
import io
import json
import random
import signal
import sys
import time
import warnings
import zipfile
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------- seeds


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def seed_pictures() -> dict[str, bytes]:
    """Small valid files of every format the loaders accept, in several modes and codecs."""
    rng = np.random.RandomState(0)
    rgb = (rng.rand(20, 24, 3) * 255).astype(np.uint8)
    rgba = np.dstack([rgb, (rng.rand(20, 24) * 255).astype(np.uint8)])
    out = {}

    def save(name, img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        out[name] = buf.getvalue()

    save("rgb.png", Image.fromarray(rgb), "PNG")
    save("rgba.png", Image.fromarray(rgba), "PNG")
    save("p.png", Image.fromarray(rgb).convert("P"), "PNG")
    save("i16.png", Image.fromarray((rng.rand(20, 24) * 65535).astype(np.uint16)), "PNG")
    save("rgb.jpg", Image.fromarray(rgb), "JPEG", quality=90)
    save("progressive.jpg", Image.fromarray(rgb), "JPEG", progressive=True)
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG")
    save("rgba.webp", Image.fromarray(rgba), "WEBP", lossless=True)
    save("rgb.webp", Image.fromarray(rgb), "WEBP", quality=80)
    save("raw.tif", Image.fromarray(rgb), "TIFF")
    save("lzw.tif", Image.fromarray(rgba), "TIFF", compression="tiff_lzw")
    save("deflate.tif", Image.fromarray(rgb), "TIFF", compression="tiff_adobe_deflate")
    save("rgb.bmp", Image.fromarray(rgb), "BMP")
    save("p.bmp", Image.fromarray(rgb).convert("P"), "BMP")
    return out


def seed_projects() -> dict[str, bytes]:
    """Valid projects as Malleable writes them (PNG entries stored) and as other programs often do
    (everything deflated, so damage reaches zlib)."""
    from editor_app.ora import LayerData, ProjectData, write_ora

    rng = np.random.RandomState(1)
    w, h = 24, 20
    base = (rng.rand(h, w, 4) * 255).astype(np.uint8)
    top = (rng.rand(h, w, 4) * 255).astype(np.uint8)
    mask = (rng.rand(h, w) * 255).astype(np.uint8)
    project = ProjectData(w, h, [LayerData("base", base), LayerData("top", top, True, 0.5, mask, {"method": "pnp"})],
                          np.zeros((h, w), np.uint8), [(1.0, 2.0, 3.0, 4.0)], 1)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.ora"
        write_ora(path, project)
        stored = path.read_bytes()
    deflated = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(stored)) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info),
                         compress_type=zipfile.ZIP_STORED if info.filename == "mimetype" else zipfile.ZIP_DEFLATED)
    offset = _rezip(stored, {"stack.xml": (b'<?xml version="1.0"?><image w="24" h="20"><stack>'
                                           b'<stack opacity="0.5"><layer name="a" src="data/layer000.png" x="-3" y="5"/>'
                                           b'</stack><layer name="b" src="data/layer001.png" x="7" y="-2"/>'
                                           b'</stack></image>')}, drop={"malleable/document.json"})
    return {"stored.ora": stored, "deflated.ora": deflated.getvalue(), "offsets.ora": offset}


def _rezip(data: bytes, replace: dict[str, bytes], drop=frozenset(), compress=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            dst.writestr(info.filename, replace.get(info.filename, src.read(info)), compress_type=compress)
        for name, value in replace.items():
            if name not in src.NameToInfo:
                dst.writestr(name, value, compress_type=compress)
    return out.getvalue()


# ---------------------------------------------------------------------------------------- mutations

def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to eight byte-level changes: flips, random bytes, truncation, a duplicated or removed span,
    an interesting integer (0, -1, 2^31, 2^32-1) written over four bytes."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            break
        op = rng.random()
        i = rng.randrange(len(b))
        if op < 0.35:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            b[i] = rng.randrange(256)
        elif op < 0.65:
            del b[rng.randrange(len(b) // 2, len(b)):]
        elif op < 0.75:
            j = min(len(b), i + rng.randint(1, 64))
            b[i:i] = b[i:j]
        elif op < 0.85:
            del b[i:i + rng.randint(1, 64)]
        else:
            value = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 1 << 20])
            b[i:i + 4] = value.to_bytes(4, rng.choice(["big", "little"]))
    return bytes(b)


_XML_VALUES = [b"inf", b"-inf", b"nan", b"1e400", b"-1e999", b"99999999999", b"-2147483649", b"0", b"-1",
               b"1.5", b"", b"x", b"\xff\xfe", b"100000", b"32769"]


def mutate_project(data: bytes, rng: random.Random) -> bytes:
    """A byte-level mutant of the whole file, or a structural one: stack.xml attributes set to
    hostile values, deep nesting, many layers, an entry replaced by mutated bytes, foreign layer data."""
    op = rng.random()
    if op < 0.4:
        return mutate_bytes(data, rng)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = [n for n in zf.namelist() if n != "mimetype"]
        stack = zf.read("stack.xml")
        name = rng.choice(names)
        entry = zf.read(name)
    if op < 0.65:
        attr = rng.choice([b'w="', b'h="', b'x="', b'y="', b'opacity="'])
        value = rng.choice(_XML_VALUES)
        if attr in stack:
            head, _, tail = stack.partition(attr)
            stack = head + attr + value + b'"' + tail.partition(b'"')[2]
        else:
            stack = stack.replace(b"<layer ", b"<layer " + attr + value + b'" ', 1)
        return _rezip(data, {"stack.xml": stack})
    if op < 0.72:
        depth = rng.choice([10, 70, 5000])
        stack = stack.replace(b"<stack>", b"<stack>" + b"<stack>" * depth, 1).replace(
            b"</stack>", b"</stack>" * (depth + 1), 1)
        return _rezip(data, {"stack.xml": stack})
    if op < 0.78:
        layer = b'<layer name="n" src="data/layer000.png" x="0" y="0"/>'
        stack = stack.replace(b"<stack>", b"<stack>" + layer * rng.choice([50, 300]), 1)
        return _rezip(data, {"stack.xml": stack})
    if op < 0.84:
        # Foreign layer data: PostScript, a JPEG, a GIF, an empty entry instead of the PNG.
        foreign = rng.choice([b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", b"",
                              b"GIF89a" + bytes(20), b"\xff\xd8\xff\xe0" + bytes(30)])
        return _rezip(data, {"data/layer000.png": foreign})
    return _rezip(data, {name: mutate_bytes(entry, rng)}, compress=rng.choice([zipfile.ZIP_STORED,
                                                                               zipfile.ZIP_DEFLATED]))


# ---------------------------------------------------------------------------------------- running

class Hang(BaseException):
    pass


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise Hang in the calling (main) thread after `seconds`; a no-op where SIGALRM is missing."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def readers() -> dict[str, tuple[Callable[[bytes, str], object], tuple[type, ...]]]:
    """name -> (read(bytes, suffix), the errors that reader is allowed to raise)."""
    from core import images
    from core.errors import InvalidInput
    from editor_app.ora import OraError, read_ora

    def ora(data: bytes, suffix: str):
        return read_ora(io.BytesIO(data))

    def engine(data: bytes, suffix: str):
        return images.load_image(images.decode_file(io.BytesIO(data), "The image"))

    def editor(data: bytes, suffix: str):
        return images.load_rgba(io.BytesIO(data), "The picture")

    return {"ora": (ora, (OraError,)), "engine-image": (engine, (InvalidInput,)),
            "editor-image": (editor, (InvalidInput,))}


def run_cases(cases, read: Callable, allowed: tuple[type, ...], bound: float) -> dict:
    outcomes: Counter = Counter()
    raw: dict[str, str] = {}
    slowest, slowest_case = 0.0, None
    for label, data in cases:
        t0 = time.perf_counter()
        try:
            with time_bound(bound), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's "corrupt EXIF" and the like: not the question
                read(data, label)
            outcomes["ok"] += 1
        except allowed:
            outcomes["own error"] += 1
        except Hang:
            outcomes["hang"] += 1
            raw.setdefault("hang", label)
        except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
            key = f"{type(exc).__name__}"
            outcomes["raw exception"] += 1
            raw.setdefault(key, f"{label}: {exc}"[:200])
        dt = time.perf_counter() - t0
        if dt > slowest:
            slowest, slowest_case = dt, label
    return dict(cases=sum(outcomes.values()), outcomes=dict(outcomes), raw=raw,
                slowest_s=round(slowest, 4), slowest_case=slowest_case)


def project_cases(n: int, seed: int):
    rng = random.Random(seed)
    seeds = sorted(seed_projects().items())
    for k in range(n):
        name, data = seeds[k % len(seeds)]
        yield f"ora#{k}<{name}", mutate_project(data, rng)


def picture_cases(n: int, seed: int):
    rng = random.Random(seed + 1)
    seeds = sorted(seed_pictures().items())
    for k in range(n):
        name, data = seeds[k % len(seeds)]
        yield f"img#{k}<{name}", mutate_bytes(data, rng)


def fuzz(n_ora: int, n_images: int, seed: int, bound: float) -> dict:
    rd = readers()
    report = {"seed": seed, "bound_s": bound}
    read, allowed = rd["ora"]
    report["ora"] = run_cases(list(project_cases(n_ora, seed)), read, allowed, bound)
    pictures = list(picture_cases(n_images, seed))
    for key in ("engine-image", "editor-image"):
        read, allowed = rd[key]
        report[key] = run_cases(pictures, read, allowed, bound)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ora", type=int, default=600, help="mutated projects (default 600)")
    ap.add_argument("--images", type=int, default=600, help="mutated pictures (default 600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bound", type=float, default=5.0, help="seconds one case may take (default 5)")
    args = ap.parse_args(argv)
    report = fuzz(args.ora, args.images, args.seed, args.bound)
    print(json.dumps(report, indent=1))
    bad = any(report[k]["outcomes"].get("raw exception") or report[k]["outcomes"].get("hang")
              for k in ("ora", "engine-image", "editor-image"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
