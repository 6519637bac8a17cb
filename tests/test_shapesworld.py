import random

import numpy as np

from tools.shapesworld import COLOURS, dominant_colour, sample_scene, scenes


def test_scenes_are_reproducible_and_captioned():
    a = [s.image.tobytes() for s in scenes(3, 5)]
    b = [s.image.tobytes() for s in scenes(3, 5)]
    assert a == b
    s = sample_scene(random.Random(1), 64, n_shapes=1, shape="square", colour="blue", position="on the left",
                     background="white", fill="filled", size="large", two_tone=False)
    assert s.caption == "a large blue square on the left, on a white background"


def test_ground_truth_matches_pixels():
    s = sample_scene(random.Random(2), 64, n_shapes=1, shape="circle", colour="red", position="on the right",
                     background="white", fill="filled", size="medium", two_tone=False)
    cx, cy = s.centroid()
    assert abs(cx - 0.7 * 64) < 4 and abs(cy - 32) < 4
    rgb = np.asarray(s.image)
    assert dominant_colour(rgb, s.masks[0]) == "red"
    assert dominant_colour(rgb, ~s.masks[0]) == "white"
    assert set(COLOURS) >= {"red", "blue"}


def test_colour_of_a_blurred_thin_stroke_is_read_from_its_core():
    from PIL import ImageFilter

    from tools.eval_demo import background_image, foreground

    s = sample_scene(random.Random(3), 64, n_shapes=1, shape="ring", colour="red", position="in the centre",
                     background="blue", fill="outlined", size="large", two_tone=False)
    soft = np.asarray(s.image.filter(ImageFilter.GaussianBlur(1.0)))  # as a VAE blurs thin strokes
    bg = background_image(s)
    ink = foreground(soft, bg)
    assert dominant_colour(soft, ink) == "purple"  # the blend of red ink and blue background
    assert dominant_colour(soft, ink, bg) == "red"
    assert dominant_colour(np.asarray(s.image), s.masks[0] & ink, bg) == "red"
