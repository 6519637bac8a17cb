"""The ShapesWorld reader's fill: stripes are a texture, read at any phase; filled and outlined
shapes still read as themselves."""
import numpy as np
import pytest
from PIL import Image

from evaluation.metrics.truth import read_attributes
from evaluation.shapesworld import ShapeSpec, draw_shape, stripe_band

BG = np.full((64, 64, 3), 255, np.float32)


def drawn(spec: ShapeSpec, stripe_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    img = Image.fromarray(BG.astype(np.uint8))
    draw_shape(img, spec, BG, stripe_offset)
    rgb = np.asarray(img)
    return rgb, np.abs(rgb.astype(np.float32) - BG).sum(-1) > 0


@pytest.mark.parametrize("shape", ["square", "circle", "triangle"])
@pytest.mark.parametrize("fill", ["filled", "outlined", "striped"])
def test_each_fill_reads_as_itself(shape, fill):
    spec = ShapeSpec(shape, "blue", fill, "large", "in the centre", (32.0, 30.0), 14.0)
    rgb, ink = drawn(spec)
    assert read_attributes(rgb, ink, spec, BG)["fill"] == fill


def test_stripes_half_a_period_on_still_read_as_striped():
    """At the renderer's one phase this square read as filled (IoU 0.61 against 0.25 striped): a
    method's striped result whose stripes fell elsewhere counted as a failed edit."""
    spec = ShapeSpec("square", "blue", "striped", "large", "in the centre", (32.0, 32.0), 14.0)
    rgb, ink = drawn(spec, stripe_offset=stripe_band(spec.radius))
    assert not (ink == drawn(spec)[1]).all()                 # other stripes than the renderer's own
    read = read_attributes(rgb, ink, spec, BG)
    assert read["fill"] == "striped", read["fill_ious"]
    filled = ShapeSpec("square", "blue", "filled", "large", "in the centre", (32.0, 32.0), 14.0)
    assert read_attributes(*drawn(filled), filled, BG)["fill"] == "filled"
