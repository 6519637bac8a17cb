"""Any input image comes in right and goes out at its exact size, mask outside untouched."""
import numpy as np
import pytest
from PIL import Image

from core import images
from core.errors import InvalidInput


def _rgb(w, h, seed=0):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    src = images.load_image(tmp_path / "r.jpg")
    assert src.size == (20, 40)  # width and height swapped
    assert src.rgb[:20].mean() > 200 and src.rgb[20:].mean() < 50  # white half now on top


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "LA", "RGBA", "1"])
def test_modes_become_rgb_with_alpha_kept(tmp_path, mode):
    base = Image.fromarray(_rgb(32, 24))
    if mode == "I;16":
        im = Image.fromarray((np.arange(32 * 24).reshape(24, 32) * 80).astype(np.uint16))
    elif mode in ("LA", "RGBA"):
        im = base.convert(mode)
        a = np.full((24, 32), 255, np.uint8)
        a[:, :8] = 0
        im.putalpha(Image.fromarray(a))
    else:
        im = base.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    im.save(path)
    src = images.load_image(path)
    assert src.rgb.shape == (24, 32, 3) and src.rgb.dtype == np.uint8
    if mode in ("LA", "RGBA"):
        assert src.alpha is not None and src.alpha[:, :8].max() == 0
        out = images.composite(src, src.rgb, None)
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], src.alpha)
    else:
        assert src.alpha is None
    if mode == "I;16":
        assert src.rgb.max() > 100  # 16-bit range scaled, not clipped to black/white


def test_sizes_outside_limits_are_clear_errors(tmp_path):
    Image.fromarray(_rgb(8, 40)).save(tmp_path / "small.png")
    with pytest.raises(InvalidInput, match="at least 16"):
        images.load_image(tmp_path / "small.png")
    with pytest.raises(InvalidInput, match="100 megapixels"):
        images.check_size(12000, 9000)
    images.check_size(10000, 10000)  # exactly 100 MP is fine


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(InvalidInput, match="bad.png is not a picture Malleable reads"):
        images.load_image(tmp_path / "bad.png")
    with pytest.raises(InvalidInput, match="not found"):
        images.load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("w,h", [(300, 200), (200, 300), (512, 512), (17, 900), (1000, 16)])
def test_working_size_keeps_aspect_and_grid(w, h):
    p = images.plan_working_size(w, h, 512, 64)
    assert p.work_w % 64 == 0 and p.work_h % 64 == 0
    assert max(p.inner_w, p.inner_h) == 512
    # Both axes scaled by the same factor (up to rounding to whole pixels): never distorted.
    assert abs(p.inner_w - w * p.scale) <= 0.5 and abs(p.inner_h - h * p.scale) <= 0.5
    x, y = p.to_work(*p.to_input(100.0, 7.5))
    assert abs(x - 100) < 1e-9 and abs(y - 7.5) < 1e-9


def test_round_trip_through_working_tensor_keeps_size():
    src = images.SourceImage(_rgb(70, 45))
    p = images.plan_working_size(70, 45, 32, 8)
    t = images.to_working_tensor(src, p)
    assert t.shape == (1, 3, p.work_h, p.work_w) and t.min() >= -1 and t.max() <= 1
    back = images.from_working_tensor(t, p)
    assert back.shape == (45, 70, 3)


def test_mask_composite_keeps_outside_pixels_bit_exact():
    src = images.SourceImage(_rgb(64, 48, 1))
    edited = _rgb(64, 48, 2)
    mask = np.zeros((48, 64), np.float32)
    mask[10:30, 20:40] = 1.0
    out = np.asarray(images.composite(src, edited, mask))
    far = np.ones((48, 64), bool)
    far[10 - images.FEATHER_PX:30 + images.FEATHER_PX, 20 - images.FEATHER_PX:40 + images.FEATHER_PX] = False
    assert np.array_equal(out[far], src.rgb[far])
    assert np.array_equal(out[12:28, 22:38], edited[12:28, 22:38])


def test_mask_must_match_and_not_be_empty(tmp_path):
    Image.new("L", (30, 30), 255).save(tmp_path / "m.png")
    with pytest.raises(InvalidInput, match="same size"):
        images.load_mask(tmp_path / "m.png", (20, 20))
    Image.new("L", (20, 20), 0).save(tmp_path / "e.png")
    with pytest.raises(InvalidInput, match="empty"):
        images.load_mask(tmp_path / "e.png", (20, 20))


def test_save_atomic_leaves_no_temp_and_refuses_unknown_format(tmp_path):
    im = Image.fromarray(_rgb(20, 20))
    images.save_atomic(im, tmp_path / "o.png")
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]
    with pytest.raises(InvalidInput, match="format"):
        images.save_atomic(im, tmp_path / "o.xyz")
    assert not (tmp_path / "o.xyz").exists()
