"""Hostile and damaged files: the .ora reader and the one picture policy answer with their own error
and a message naming the problem, refuse what is too large from headers alone, and decode only the
formats Malleable supports."""
import io
import struct
import time
import zipfile
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from core import images
from core.errors import InvalidInput
from core.formats import READ_FORMATS
from editor_app import ora
from editor_app.project_files import read_picture
from editor_app.ora import OraError, ReadCancelled, ReadLimits, read_ora

POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR declares w x h, followed by a few bytes of pixel data (as a bomb would be:
    the header is honest, the data would take minutes and gigabytes to inflate)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_ora(path, stack_xml, entries, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "image/openraster")
        zf.writestr("stack.xml", stack_xml, compress_type=compress)
        for name, data in entries.items():
            zf.writestr(name, data, compress_type=compress)
    return path


def one_layer_xml(w=8, h=6, x="0", y="0", extra=""):
    return (f'<image w="{w}" h="{h}"><stack><layer name="l" src="data/a.png" x="{x}" y="{y}"{extra}/>'
            '</stack></image>')


SMALL = png_bytes(np.full((6, 8, 4), 200, np.uint8))


@pytest.fixture()
def no_decoding(monkeypatch):
    """Fails the test if any layer pixel is decoded: refusals must come from headers alone."""
    def forbidden(*a, **k):
        raise AssertionError("pixels were decoded before the project was refused")
    monkeypatch.setattr(ora.images, "load_rgba", forbidden)


# ---------------------------------------------------------------------------------------- .ora
@pytest.mark.parametrize("attrs,needle", [
    (dict(x="inf"), "finite"), (dict(y="-inf"), "finite"), (dict(x="nan"), "finite"),
    (dict(x="1e400"), "finite"), (dict(x="99999999999"), "between"), (dict(w="inf"), "finite"),
    (dict(h="1e9"), "between"), (dict(w="0"), "between"), (dict(x="left"), "not a number"),
])
def test_non_finite_or_absurd_coordinates_are_refused(tmp_path, attrs, needle):
    xml = one_layer_xml(**attrs)
    path = make_ora(tmp_path / "c.ora", xml, {"data/a.png": SMALL})
    with pytest.raises(OraError, match=needle):
        read_ora(path)


def test_corrupt_deflate_data_is_an_ora_error(tmp_path):
    path = make_ora(tmp_path / "z.ora", one_layer_xml(), {"data/a.png": SMALL}, compress=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.index(b"data/a.png") + len("data/a.png")  # the entry's compressed bytes follow its name
    for i in range(start + 4, start + 40):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(OraError, match="damaged|corrupt|cannot be read"):
        read_ora(path)


def test_entry_name_that_is_not_utf8_is_an_ora_error(tmp_path):
    path = make_ora(tmp_path / "u.ora", one_layer_xml(), {"data/a.png": SMALL})
    data = bytearray(path.read_bytes())
    # Set the "name is UTF-8" flag on the central directory record of data/a.png and break its name.
    cd = data.rindex(b"PK\x01\x02" + data[data.rindex(b"PK\x01\x02") + 4: data.rindex(b"PK\x01\x02") + 6])
    data[cd + 8] |= 0x08
    name_at = cd + 46
    data[name_at] = 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(OraError, match="not valid text|damaged"):
        read_ora(path)


def test_postscript_or_jpeg_layer_is_never_decoded(tmp_path, monkeypatch):
    def ghostscript(*a, **k):
        raise AssertionError("the PostScript decoder was reached")
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", ghostscript)
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 6)).save(jpeg, format="JPEG")
    for data in (POSTSCRIPT, jpeg.getvalue()):
        path = make_ora(tmp_path / "ps.ora", one_layer_xml(), {"data/a.png": data})
        with pytest.raises(OraError, match="not PNG data"):
            read_ora(path)


def test_one_huge_layer_referenced_twenty_times_is_refused_from_headers(tmp_path, no_decoding):
    # The case: 144 MP declared by one layer PNG, referenced 20 times, in a few KB.
    layers = "".join(f'<layer name="l{i}" src="data/a.png"/>' for i in range(20))
    path = make_ora(tmp_path / "bomb.ora", f'<image w="12000" h="12000"><stack>{layers}</stack></image>',
                    {"data/a.png": png_header_only(12000, 12000)}, compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 5000
    t0 = time.perf_counter()
    with pytest.raises(OraError, match="megapixels"):
        read_ora(path)
    assert time.perf_counter() - t0 < 5  # generous: refused from headers, not after a decode

    # Under the per-picture limit but over the budget: 81 MP canvas, 20 layers.
    path = make_ora(tmp_path / "budget.ora", f'<image w="9000" h="9000"><stack>{layers}</stack></image>',
                    {"data/a.png": png_header_only(9000, 9000)}, compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(OraError, match="1620 megapixels of layers.*20 layers"):
        read_ora(path)


def test_too_many_layers_are_refused_before_decoding(tmp_path, no_decoding):
    layers = "".join(f'<layer name="l{i}" src="data/a.png"/>' for i in range(300))
    path = make_ora(tmp_path / "many.ora", f'<image w="1024" h="1024"><stack>{layers}</stack></image>',
                    {"data/a.png": png_bytes(np.zeros((1, 1, 4), np.uint8))})
    with pytest.raises(OraError, match="more than 256 layers"):
        read_ora(path)
    with pytest.raises(OraError, match="megapixels of layers"):
        read_ora(path, limits=ReadLimits(layers=1000, pixels=100_000_000))


def test_deep_nesting_and_deep_json_are_answered(tmp_path):
    deep = "<stack>" * 5000 + '<layer name="l" src="data/a.png"/>' + "</stack>" * 5000
    path = make_ora(tmp_path / "deep.ora", f'<image w="8" h="6"><stack>{deep}</stack></image>', {"data/a.png": SMALL})
    with pytest.raises(OraError, match="nested"):
        read_ora(path)
    path = make_ora(tmp_path / "json.ora", one_layer_xml(), {"data/a.png": SMALL,
                                                             "malleable/document.json": b"[" * 100000})
    assert len(read_ora(path).layers) == 1  # damaged metadata is ignored, the layers are good


def test_same_png_in_several_layers_gives_separate_arrays(tmp_path):
    xml = '<image w="8" h="6"><stack><layer name="a" src="data/a.png"/><layer name="b" src="data/a.png"/></stack></image>'
    data = read_ora(make_ora(tmp_path / "twice.ora", xml, {"data/a.png": SMALL}))
    a, b = data.layers
    assert np.array_equal(a.pixels, b.pixels) and not np.shares_memory(a.pixels, b.pixels)


def test_progress_and_cancel(tmp_path):
    layers = "".join(f'<layer name="l{i}" src="data/a.png"/>' for i in range(5))
    path = make_ora(tmp_path / "five.ora", f'<image w="8" h="6"><stack>{layers}</stack></image>', {"data/a.png": SMALL})
    seen = []
    read_ora(path, progress=lambda done, total, what: seen.append((done, total)))
    assert seen[0] == (0, 5) and seen[-1] == (5, 5) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    asked = []
    with pytest.raises(ReadCancelled):
        read_ora(path, cancel=lambda: asked.append(1) or len(asked) > 2)
    assert len(asked) == 3  # asked between layers, stopped at the first True


# ---------------------------------------------------------------------------------------- pictures
def test_one_allow_list_and_one_limit():
    assert READ_FORMATS == ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
    # Pillow's own bomb guard refuses exactly above our limit, never above it.
    assert 2 * Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS


@pytest.mark.parametrize("reader", ["engine", "editor"])
def test_postscript_named_png_never_reaches_ghostscript(tmp_path, monkeypatch, reader):
    def ghostscript(*a, **k):
        raise AssertionError("the PostScript decoder was reached")
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", ghostscript)
    path = tmp_path / "photo.png"
    path.write_bytes(POSTSCRIPT)
    if reader == "engine":
        with pytest.raises(InvalidInput, match="photo.png is not a picture Malleable reads"):
            images.load_image(path)
    else:
        with pytest.raises(InvalidInput, match="photo.png is not a picture Malleable reads"):
            read_picture(path)


@pytest.mark.parametrize("reader", ["engine", "editor"])
def test_pixel_limit_is_checked_from_the_header(tmp_path, reader):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(12000, 12000))  # 144 MP declared, a few bytes of data
    err = InvalidInput
    load = images.load_image if reader == "engine" else read_picture
    t0 = time.perf_counter()
    with pytest.raises(err, match="huge.png.* is 144 MP: the limit is 100 megapixels"):
        load(path)
    assert time.perf_counter() - t0 < 5
    # Exactly at the limit is not refused for its size (it fails later, as the damaged file it is).
    path.write_bytes(png_header_only(10000, 10000))
    with pytest.raises(err, match="damaged or truncated"):
        load(path)


def test_serialised_request_images_obey_the_policy():
    from core.request import _image_from

    with pytest.raises(InvalidInput, match="not a picture"):
        import base64
        _image_from({"png": base64.b64encode(POSTSCRIPT).decode()})


def test_layer_pngs_in_projects_obey_the_picture_limit(tmp_path, no_decoding):
    path = make_ora(tmp_path / "big.ora", one_layer_xml(), {"data/a.png": png_header_only(11000, 10000)})
    with pytest.raises(OraError, match="the limit is 100 megapixels"):
        read_ora(path)


def test_editor_decoder_reads_from_file_objects():
    assert images.load_rgba(io.BytesIO(SMALL)).shape == (6, 8, 4)
