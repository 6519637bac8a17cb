"""Writes the sample images in resources/samples/ (rendered ShapesWorld scenes)."""
import random
from pathlib import Path

from tools.shapesworld import sample_scene

OUT = Path(__file__).resolve().parents[1] / "resources" / "samples"
SAMPLES = {
    "shapes.png": dict(shape="circle", colour="red", fill="filled", size="large", position="in the centre",
                       background="white", two_tone=False),
    "square-left.png": dict(shape="square", colour="blue", fill="filled", size="medium", position="on the left",
                            background="yellow", two_tone=False),
    "striped-star.png": dict(shape="star", colour="purple", fill="striped", size="large", position="in the centre",
                             background="white", two_tone=True),
}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fixed in SAMPLES.items():
        scene = sample_scene(random.Random(name), 256, n_shapes=1, **fixed)
        scene.image.save(OUT / name)
        print(OUT / name, scene.caption)
