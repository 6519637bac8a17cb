"""Reading pictures, and OpenRaster projects: round trips, foreign files, damaged and hostile files."""
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidInput
from editor_app.document import Document
from editor_app.ora import OraError, read_ora
from editor_app.export import ExportError, export_document
from editor_app.project_files import open_into, read_picture, save_project
from widgets.export_dialog import ExportOptions
from tests.editor_helpers import sample_rgba, write_png


# ---------------------------------------------------------------------------------- pictures
def test_modes_become_rgba8(tmp_path):
    grey16 = (np.arange(12 * 10, dtype=np.uint16).reshape(10, 12) * 500)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    pal = Image.fromarray(sample_rgba()[..., :3]).convert("P")
    pal.save(tmp_path / "p.png")
    Image.new("LA", (5, 4), (100, 50)).save(tmp_path / "la.png")
    Image.new("CMYK", (6, 3), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (7, 2), (1, 2, 3)).save(tmp_path / "x.bmp")
    Image.new("RGB", (7, 2), (1, 2, 3)).save(tmp_path / "x.tiff")
    Image.new("RGBA", (7, 2), (1, 2, 3, 4)).save(tmp_path / "x.webp", lossless=True)
    g = read_picture(tmp_path / "g16.png")
    assert g.dtype == np.uint8 and g.shape == (10, 12, 4)
    assert g[-1, -1, 0] > 200 and g[0, 0, 0] == 0  # scaled from 16 bits, not clipped
    assert read_picture(tmp_path / "p.png").shape == (48, 64, 4)
    assert tuple(read_picture(tmp_path / "la.png")[0, 0]) == (100, 100, 100, 50)
    assert read_picture(tmp_path / "cmyk.jpg")[0, 0, 0] > 200  # magenta-ish: strong red
    assert tuple(read_picture(tmp_path / "x.bmp")[0, 0]) == (1, 2, 3, 255)
    assert tuple(read_picture(tmp_path / "x.tiff")[0, 0]) == (1, 2, 3, 255)
    assert tuple(read_picture(tmp_path / "x.webp")[0, 0]) == (1, 2, 3, 4)


def _gui_and_cli_pixels(path):
    """The picture as the editor opens it and as malleable-edit reads it."""
    from core.images import load_image

    doc = Document()
    open_into(doc, path)
    src = load_image(path)  # what editor_app.cli does with INPUT
    return doc.layers[0].pixels, src.rgb


def test_gui_and_cli_read_16_bit_and_float_pictures_alike(tmp_path, qapp):
    # A dark 16-bit PNG: no value above 255, still 16-bit (the GUI read 200 where the CLI read 1).
    dark = np.full((20, 20), 200, np.uint16)
    dark[0, :4] = (0, 257, 40000, 65535)
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    # Float TIFFs: 0..1 scales by 255; with values above 1 the picture is taken as 0..255.
    unit = np.full((20, 20), 0.25, np.float32)
    unit[0, :2] = (0.0, 1.0)
    Image.fromarray(unit).save(tmp_path / "unit.tiff")
    wide = np.full((20, 20), 2.0, np.float32)
    wide[0, :3] = (128.0, 255.0, 300.0)
    Image.fromarray(wide).save(tmp_path / "wide.tiff")
    # The body's value, then the first row's: a 16-bit value v reads round(v / 257).
    expected = {"dark16.png": (1, 0, 1, 156, 255), "unit.tiff": (64, 0, 255), "wide.tiff": (2, 128, 255, 255)}
    for name, values in expected.items():
        gui, cli = _gui_and_cli_pixels(tmp_path / name)
        assert np.array_equal(gui[..., :3], cli) and (gui[..., 3] == 255).all(), name
        body, *row = values
        assert gui[5, 5, 0] == body and tuple(gui[0, : len(row), 0]) == tuple(row), name
        assert (gui[..., 0] == gui[..., 1]).all() and (gui[..., 1] == gui[..., 2]).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise, as phones write it
    img.save(tmp_path / "phone.jpg", exif=exif)
    assert read_picture(tmp_path / "phone.jpg").shape == (40, 20, 4)


@pytest.mark.parametrize("content", [b"", b"not a picture at all", None])
def test_bad_pictures_give_messages(tmp_path, content):
    path = tmp_path / "bad.png"
    if content is None:  # a real PNG cut in half
        buf = io.BytesIO()
        Image.fromarray(sample_rgba(200, 200)).save(buf, format="PNG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as err:
        read_picture(path)
    assert "bad.png" in str(err.value)
    with pytest.raises(InvalidInput):
        read_picture(tmp_path / "missing.png")


# ---------------------------------------------------------------------------------- projects
@pytest.fixture
def rich_doc(qapp):
    d = Document()
    d.load_image(sample_rgba(), "base")
    top = d.add_result_layer(sample_rgba(seed=5), "result", {"method": "pnp", "params": {"prompt": "a dog"}})
    d.set_layer_mask(top, (np.arange(64)[None, :].repeat(48, 0) * 4).astype(np.uint8))
    d.set_layer_opacity(top, 0.6)
    d.add_point_pair(7, 8, 9, 10)  # on "base", the active layer: points are kept per layer
    d.set_active_layer(top)
    d.add_layer(sample_rgba(seed=6), "hidden")
    d.set_layer_visible(d.active_layer, False)
    s = d.begin_mask_stroke()
    s.stroke_to(20, 20, 12, 0.5)
    s.finish()
    d.add_point_pair(1.5, 2.25, 30, 40)
    return d


def assert_same_document(a: Document, b: Document):
    assert a.size() == b.size()
    assert len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers):
        assert (x.name, x.visible, x.metadata, x.points, x.group) == (y.name, y.visible, y.metadata, y.points, y.group)
        assert abs(x.opacity - y.opacity) < 1e-6
        assert np.array_equal(x.pixels, y.pixels)
        assert (x.mask is None) == (y.mask is None)
        if x.mask is not None:
            assert np.array_equal(x.mask, y.mask)
    assert np.array_equal(a.edit_mask_array(), b.edit_mask_array())
    assert a.point_pairs() == b.point_pairs()


def test_ora_round_trip_is_exact(tmp_path, rich_doc):
    path = tmp_path / "p.ora"
    save_project(rich_doc, path)
    assert not rich_doc.is_modified and rich_doc.file_path == path
    again = Document()
    open_into(again, path)
    assert_same_document(rich_doc, again)
    assert again.active_layer.name == "hidden"


def test_ora_is_standard_for_other_programs(tmp_path, rich_doc):
    path = tmp_path / "p.ora"
    save_project(rich_doc, path)
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == b"image/openraster"
        names = zf.namelist()
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= set(names)
        xml = zf.read("stack.xml").decode()
        # top layer first, hidden flag and opacity in standard attributes
        assert xml.index('name="hidden"') < xml.index('name="result"') < xml.index('name="base"')
        assert 'visibility="hidden"' in xml and 'opacity="0.6"' in xml
        # what other programs see of the masked layer already has its mask applied
        shown = np.asarray(Image.open(io.BytesIO(zf.read("data/layer001.png"))))
        assert shown[0, 0, 3] == 0 and shown[0, -1, 3] > 200
    assert not list(tmp_path.glob("*.tmp"))


def test_save_is_atomic(tmp_path, rich_doc, monkeypatch):
    path = tmp_path / "p.ora"
    save_project(rich_doc, path)
    before = path.read_bytes()
    rich_doc.add_point_pair(0, 0, 1, 1)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("editor_app.ora.encode_png", boom)
    with pytest.raises(OSError):
        save_project(rich_doc, path)
    assert path.read_bytes() == before  # the old project is intact…
    assert sorted(os.listdir(tmp_path)) == ["p.ora"]  # …and no temporary file is left
    assert rich_doc.is_modified


def _zip(path, entries, mimetype=True):
    with zipfile.ZipFile(path, "w") as zf:
        if mimetype:
            zf.writestr("mimetype", "image/openraster")
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _png_bytes(rgba):
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


def test_foreign_ora_with_groups_and_offsets_opens(tmp_path, qapp):
    red = np.zeros((4, 4, 4), np.uint8)
    red[...] = (255, 0, 0, 255)
    xml = ('<?xml version="1.0"?><image w="10" h="8"><stack>'
           '<stack name="group" opacity="0.5"><layer name="red" src="data/red.png" x="3" y="2" opacity="0.8"/></stack>'
           '<layer name="bg" src="data/bg.png" visibility="hidden"/><text>ignored</text></stack></image>')
    path = _zip(tmp_path / "krita.ora", {"stack.xml": xml, "data/red.png": _png_bytes(red),
                                          "data/bg.png": _png_bytes(np.full((8, 10, 4), 9, np.uint8))})
    doc = Document()
    open_into(doc, path)
    bg, layer = doc.layers
    assert (bg.name, bg.visible, layer.name) == ("bg", False, "red")
    assert abs(layer.opacity - 0.4) < 1e-6
    assert tuple(layer.pixels[2, 3]) == (255, 0, 0, 255) and layer.pixels[0, 0, 3] == 0
    assert not doc.edit_mask_array().any() and doc.point_pairs() == []


def damaged_files(tmp_path, good_path):
    good = zipfile.ZipFile(good_path)
    entries = {n: good.read(n) for n in good.namelist() if n != "mimetype"}
    out = {}
    (tmp_path / "garbage.ora").write_bytes(b"PK\x03\x04 this is not really a zip")
    out["garbage"] = tmp_path / "garbage.ora"
    out["truncated"] = tmp_path / "truncated.ora"
    out["truncated"].write_bytes(good_path.read_bytes()[:300])
    out["bad xml"] = _zip(tmp_path / "badxml.ora", {**entries, "stack.xml": b"<image w='3' h='3'><stack"})
    out["missing png"] = _zip(tmp_path / "missing.ora", {k: v for k, v in entries.items()
                                                         if k != "data/layer000.png"})
    out["corrupt png"] = _zip(tmp_path / "corrupt.ora", {**entries, "data/layer000.png": b"\x89PNG\r\n\x1a\nxx"})
    out["escape"] = _zip(tmp_path / "escape.ora", {
        "stack.xml": '<image w="4" h="4"><stack><layer name="x" src="../../evil.png"/></stack></image>',
        "../../evil.png": _png_bytes(np.zeros((4, 4, 4), np.uint8))[:20]})
    out["huge"] = _zip(tmp_path / "huge.ora", {"stack.xml": '<image w="100000" h="100000"><stack/></image>'})
    out["no size"] = _zip(tmp_path / "nosize.ora", {"stack.xml": '<image><stack/></image>'})
    out["no layers"] = _zip(tmp_path / "empty.ora", {"stack.xml": '<image w="4" h="4"><stack/></image>'})
    out["mask wrong size"] = _zip(tmp_path / "masksize.ora", {
        **entries, "malleable/edit_mask.png": _png_bytes(np.zeros((3, 3), np.uint8))})
    return out


def test_damaged_ora_raises_ora_error_never_crashes(tmp_path, rich_doc):
    good = tmp_path / "good.ora"
    save_project(rich_doc, good)
    for what, path in damaged_files(tmp_path, good).items():
        with pytest.raises(OraError) as err:
            read_ora(path)
        assert str(err.value), what
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_bad_malleable_metadata_is_ignored_not_fatal(tmp_path, rich_doc):
    good = tmp_path / "good.ora"
    save_project(rich_doc, good)
    with zipfile.ZipFile(good) as zf:
        entries = {n: zf.read(n) for n in zf.namelist() if n != "mimetype"}
    entries["malleable/document.json"] = b'{"points": [[1, 2, "x", 4], "junk"], "layers": 5}'
    data = read_ora(_zip(tmp_path / "meta.ora", entries))
    assert len(data.layers) == 3 and data.points == []


def test_export_flattened(tmp_path, rich_doc):
    for name in ("out.png", "out.jpg", "out.webp"):
        export_document(rich_doc, ExportOptions().with_path(tmp_path / name))
        with Image.open(tmp_path / name) as img:
            assert img.size == (64, 48)
    png = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(png, rich_doc.composite_rgba())
    with pytest.raises(ExportError):
        export_document(rich_doc, ExportOptions(path=str(tmp_path / "out.gif")))
