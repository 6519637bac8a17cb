"""Write resources/sentences/templates.txt: the sentence bank pix2pix-zero's edit directions use.

Each line is a sentence with one `{}` slot for the word ("a painting of a {} in a field"). The bank
is built from a few hundred hand-written pieces (media, subject phrasings, settings, actions,
free-form sentences), combined deterministically and de-duplicated, so any word gets about 1,000
varied sentences. Run from the repository root:

    python -m tools.make_sentence_bank            # rewrite both banks
    python -m tools.make_sentence_bank --check    # fail if a committed bank is out of date

It also writes the demo model's own bank (resources/models/demo/sentences.txt): ShapesWorld captions
with the slot in the shape's name or its colour, since the demo's text encoder has only read
ShapesWorld captions and the generic sentences mean nothing to it.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "resources" / "sentences" / "templates.txt"
DEMO_OUT = Path(__file__).resolve().parents[1] / "resources" / "models" / "demo" / "sentences.txt"
DEMO_TARGET = 600
TARGET = 1000
SEED = 20230206

MEDIA = [
    "a photo of", "a close-up photo of", "a cropped photo of", "a bright photo of", "a dark photo of",
    "a blurry photo of", "a sharp photo of", "a black and white photo of", "a vintage photo of",
    "a low resolution photo of", "a high resolution photo of", "a professional photo of",
    "a snapshot of", "a candid photo of", "a wide-angle photo of", "a telephoto shot of",
    "a polaroid of", "a film photograph of", "a phone picture of", "a studio portrait of",
    "a painting of", "an oil painting of", "a watercolor painting of", "an acrylic painting of",
    "an impressionist painting of", "a drawing of", "a pencil drawing of", "a charcoal sketch of",
    "a sketch of", "an ink drawing of", "a pastel drawing of", "an illustration of",
    "a children's book illustration of", "a cartoon of", "an anime drawing of", "a comic panel showing",
    "a digital painting of", "a 3D render of", "a low poly model of", "a pixel art image of",
    "a sculpture of", "a clay model of", "an embroidery of", "a mosaic of", "a stained glass window showing",
    "a tattoo of", "a poster of", "a postcard showing", "a magazine cover showing",
    "a screenshot of a video game with", "a still from a movie showing", "a documentary still of",
    "a rendering of", "a woodcut print of", "a linocut of", "a graffiti painting of",
]

SUBJECTS = [
    "a {}", "the {}", "a small {}", "a big {}", "a cute {}", "a beautiful {}", "an old {}",
    "a young {}", "a single {}", "one {}", "a lonely {}", "a happy {}", "a sleepy {}", "my {}",
    "a clean {}", "a dirty {}", "a weird {}", "a nice {}", "a large {}", "a tiny {}",
]

SETTINGS = [
    "", "in a field", "on the street", "at the beach", "in the snow", "in a living room",
    "next to a window", "under a tree", "at night", "in the rain", "in the forest", "on a table",
    "in a garden", "in the city", "on a sunny day", "in the morning", "at sunset", "in a park",
    "on the grass", "in front of a house", "in a kitchen", "on a sofa", "near a lake",
    "in the mountains", "in the desert", "by the river", "on a wooden floor", "in the studio",
    "against a white background", "against a blue sky", "in the fog", "in autumn", "in spring",
    "in winter", "in summer", "on a rooftop", "in an old town", "in a museum", "at a farm",
    "in a backyard", "under the stars", "in a meadow of flowers", "on a country road",
]

ENDINGS = ["", ".", ", high quality", ", detailed", ", award winning", ", 4k", ", soft light",
           ", natural light", ", centered", ", in focus"]

FREE = [
    "there is a {} in the picture.", "I saw a {} yesterday.", "this is a picture of a {}.",
    "a {} looking at the camera", "a {} sitting on a couch", "a {} standing in the grass",
    "a {} lying on the floor", "a {} next to a chair", "a {} and a tree", "a {} on a blanket",
    "a {} in the middle of the road", "a {} seen from above", "a {} seen from the side",
    "a {} in the foreground, mountains behind", "the {} is the main subject of this photo",
    "a portrait of a {}", "a picture of my favourite {}", "a {} at the center of the image",
    "a photograph with a {} in it", "look at this {}!", "what a lovely {}.", "a {} on display",
    "an image containing a {}", "a {} under bright light", "a {} in soft shadow",
    "a {} framed by leaves", "a {} reflected in a mirror", "a {} on an old photograph",
    "a {} close to the camera", "a {} far away", "a {} in a busy scene", "a {} in a quiet scene",
    "a {} in a painting by an old master", "a {} drawn by a child", "a {} in a family album",
    "a {} in a travel photo", "a {} in an advertisement", "a {} in a textbook",
    "a {} in a nature documentary", "a {} in a snow globe", "a toy {}", "a realistic {}",
    "a detailed {}", "a colourful {}", "a {} with a red background", "a {} with a green background",
    "a {} by the window at dawn", "a {} outdoors", "a {} indoors", "a {}, photographed in daylight",
    "a {}, photographed at night", "two friends looking at a {}", "a {} in a crowded market",
    "a {} on a wooden bench", "a {} on a stone wall", "a {} in tall grass", "a {} near the sea",
    "a {} on a snowy hill", "a {} in a sunny room", "a {} on a rainy day", "a {} in the shade",
    "a {} in a photo studio", "a {} in a cozy home", "a {} in a garden full of flowers",
]


def build(target: int = TARGET, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    combos = []
    for m in MEDIA:
        for s in SUBJECTS:
            for place in SETTINGS:
                combos.append(" ".join(x for x in (m, s, place) if x))
    rng.shuffle(combos)
    out = list(dict.fromkeys(FREE))
    seen = set(out)
    for c in combos:
        if len(out) >= target:
            break
        line = c + rng.choice(ENDINGS)
        if line not in seen:
            seen.add(line)
            out.append(line)
    assert all(line.count("{}") == 1 for line in out)
    return out


def build_shapesworld(target: int = DEMO_TARGET, seed: int = SEED) -> list[str]:
    """ShapesWorld captions with `{}` in the first shape's name (half of them) or its colour (the other
    half): the two words an edit of the demo swaps. Every other attribute varies; a third are partial
    captions ("a {} circle", "a small red {} on the left"), which the demo model reads too."""
    from tools.shapesworld import BACKGROUNDS, COLOURS, FILLS, POSITIONS, SHAPES, SIZES, article

    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < target:
        bg = rng.choice(BACKGROUNDS)
        colour = rng.choice([c for c in COLOURS if c != bg])
        shape = rng.choice(SHAPES)
        if len(out) % 2:
            colour = "{}"
        else:
            shape = "{}"
        fill = rng.choice(FILLS)
        if rng.random() < 1 / 3:  # a partial caption, as the demo also learnt to read ("a {} circle")
            words = [w for w, keep in ((rng.choice(list(SIZES)), rng.random() < 0.3), (fill, rng.random() < 0.4),
                                       (colour, colour == "{}" or rng.random() < 0.6), (shape, True),
                                       (rng.choice(list(POSITIONS)), rng.random() < 0.3)) if keep]
            line = f"{article(words[0])} {' '.join(words)}" + (f", on a {bg} background" if rng.random() < 0.3 else "")
            if line not in seen:
                seen.add(line)
                out.append(line)
            continue
        fill = "" if fill == "filled" else fill + " "
        first = f"a {rng.choice(list(SIZES))} {fill}{colour} {shape} {rng.choice(list(POSITIONS))}"
        if rng.random() < 0.3:  # a second shape, as in the training captions
            other = rng.choice([c for c in COLOURS if c != bg])
            first += f" and a small {other} {rng.choice(SHAPES)} {rng.choice(list(POSITIONS))}"
        line = f"{first}, on a {bg} background"
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def render(lines: list[str]) -> str:
    header = ["# pix2pix-zero sentence bank: one sentence per line, `{}` is the word's slot.",
              "# Generated by tools/make_sentence_bank.py; edit that script, not this file."]
    return "\n".join(header + lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check the committed bank is current")
    args = ap.parse_args(argv)
    status = 0
    for out, text in ((OUT, render(build())), (DEMO_OUT, render(build_shapesworld()))):
        if args.check:
            ok = out.is_file() and out.read_text(encoding="utf-8") == text
            print(f"{out.name} is up to date" if ok else f"{out} is out of date: run {sys.argv[0]}")
            status |= 0 if ok else 1
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {len(text.splitlines()) - 2} sentences to {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
