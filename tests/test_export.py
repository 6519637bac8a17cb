"""Export: pixels round-trip (PNG, WebP lossless and TIFF exact, JPEG within its quality), the edit
parameters as PNG text when asked, the selection or one layer alone, Export Again, atomic writes."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from editor_app import export
from editor_app.document import Document
from editor_app.export import ExportError, export_document
from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from widgets import dialogs, export_dialog
from widgets.export_dialog import ExportDialog, ExportOptions
from tests.editor_helpers import sample_rgba, write_png

W, H = 64, 48


def smooth_rgba(w=W, h=H):
    """A picture JPEG can hold well (gradients), opaque."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 4), np.uint8)
    out[..., 0] = xx * 255 // (w - 1)
    out[..., 1] = yy * 255 // (h - 1)
    out[..., 2] = 128 + 60 * np.sin(xx / 7.0)
    out[..., 3] = 255
    return out


@pytest.fixture
def doc(qapp):
    d = Document()
    d.load_image(sample_rgba(W, H), "base")  # random pixels with a transparent corner
    top = np.zeros((H, W, 4), np.uint8)
    top[10:30, 20:50] = (250, 200, 10, 180)
    d.add_result_layer(top, "Restyle 1", {"method": "pnp", "params": {"prompt": "gold 金", "steps": 12},
                                          "model": "demo", "seconds": 1.0})
    return d


def read(path):
    with Image.open(path) as img:
        img.load()
        return np.asarray(img.convert("RGBA")), dict(img.info)


def test_png_round_trips_exactly(doc, tmp_path):
    path = export_document(doc, ExportOptions().with_path(tmp_path / "out.png"))
    pixels, _ = read(path)
    assert np.array_equal(pixels, doc.composite_rgba())
    assert pixels[2, 2, 3] == 0  # transparency kept


def test_webp_lossless_and_tiff_round_trip_exactly(doc, tmp_path):
    for name, extra in (("out.webp", {"lossless": True}), ("out.tif", {"tiff_compression": "lzw"}),
                        ("out2.tiff", {"tiff_compression": "deflate"}), ("out3.tif", {"tiff_compression": "none"})):
        pixels, _ = read(export_document(doc, ExportOptions(**extra).with_path(tmp_path / name)))
        assert np.array_equal(pixels, doc.composite_rgba()), name


def lossy_error(tmp_path, ext, quality) -> float:
    """Mean absolute difference per channel after exporting the smooth picture at this quality."""
    d = Document()
    d.load_image(smooth_rgba(), "smooth")
    pixels, _ = read(export_document(d, ExportOptions(quality=quality).with_path(tmp_path / f"q{quality}{ext}")))
    return float(np.abs(pixels[..., :3].astype(int) - smooth_rgba()[..., :3]).mean())


def test_jpeg_is_within_its_quality(qapp, tmp_path):
    high, low = lossy_error(tmp_path, ".jpg", 95), lossy_error(tmp_path, ".jpg", 30)
    assert high < 1.5
    assert low > high * 1.5  # the control: the quality setting is what made it close


def test_lossy_webp_is_close_and_honours_quality(qapp, tmp_path):
    high, low = lossy_error(tmp_path, ".webp", 95), lossy_error(tmp_path, ".webp", 10)
    assert high < 3.0 and low > high


def test_jpeg_flattens_transparency_onto_white(doc, tmp_path):
    pixels, _ = read(export_document(doc, ExportOptions(quality=95).with_path(tmp_path / "out.jpg")))
    assert pixels[2, 2, :3].min() > 240  # the transparent corner became white


def test_png_text_holds_the_edit_parameters_only_when_asked(doc, tmp_path):
    _, info = read(export_document(doc, ExportOptions(embed_parameters=True).with_path(tmp_path / "with.png")))
    assert info["Software"] == "Malleable"
    records = json.loads(info["Malleable edits"])
    assert records == [{"layer": "Restyle 1", "method": "pnp", "params": {"prompt": "gold 金", "steps": 12},
                        "model": "demo"}]
    _, info = read(export_document(doc, ExportOptions(embed_parameters=False).with_path(tmp_path / "without.png")))
    assert "Software" not in info and "Malleable edits" not in info
    _, info = read(export_document(doc, ExportOptions(embed_parameters=True).with_path(tmp_path / "with.jpg")))
    assert json.loads(info["comment"].decode("utf-8"))[0]["method"] == "pnp"
    doc.set_layer_visible(doc.layers[-1], False)  # a hidden result is not in the picture exported
    _, info = read(export_document(doc, ExportOptions(embed_parameters=True).with_path(tmp_path / "hidden.png")))
    assert "Malleable edits" not in info


def test_selection_only_is_cropped_to_it_and_transparent_around_it(doc, tmp_path):
    sel = np.zeros((H, W), np.uint8)
    sel[5:25, 8:40] = 255
    sel[25:30, 8:40] = 100  # partly selected: partly transparent
    doc.set_edit_mask(sel)
    pixels, _ = read(export_document(doc, ExportOptions(selection_only=True).with_path(tmp_path / "sel.png")))
    assert pixels.shape == (25, 32, 4)  # the selection's bounding box
    full = doc.composite_rgba()
    assert np.array_equal(pixels[:20, :, :3][pixels[:20, :, 3] > 0], full[5:25, 8:40, :3][full[5:25, 8:40, 3] > 0])
    assert np.array_equal(pixels[:20, :, 3], full[5:25, 8:40, 3])
    expected_alpha = (full[25:30, 8:40, 3].astype(int) * 100 + 127) // 255
    assert np.array_equal(pixels[20:, :, 3], expected_alpha)
    # JPEG: the same crop, white where unselected
    jpeg, _ = read(export_document(doc, ExportOptions(selection_only=True, quality=95).with_path(tmp_path / "sel.jpg")))
    assert jpeg.shape == (25, 32, 4)
    doc.clear_edit_mask()
    with pytest.raises(ExportError, match="Nothing is selected"):
        export_document(doc, ExportOptions(selection_only=True).with_path(tmp_path / "none.png"))


def test_one_layer_alone_with_its_mask(doc, tmp_path):
    layer = doc.active_layer
    mask = np.zeros((H, W), np.uint8)
    mask[:, :35] = 255
    doc.set_layer_mask(layer, mask)
    doc.set_layer_opacity(layer, 0.3)  # a setting of the stack, not of the layer's picture
    pixels, _ = read(export_document(doc, ExportOptions(layer_id=layer.id).with_path(tmp_path / "layer.png")))
    expected = layer.pixels.copy()
    expected[:, 35:, 3] = 0
    assert np.array_equal(pixels[..., 3], expected[..., 3])
    assert np.array_equal(pixels[expected[..., 3] > 0], expected[expected[..., 3] > 0])
    doc.remove_layer(layer)
    with pytest.raises(ExportError, match="not in the picture"):
        export_document(doc, ExportOptions(layer_id=layer.id).with_path(tmp_path / "gone.png"))


def test_a_failed_export_leaves_the_old_file_and_no_temporary(doc, tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"the old export")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(ExportError, match="No space left"):
        export_document(doc, ExportOptions().with_path(target))
    assert target.read_bytes() == b"the old export"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_unknown_formats_and_folders_are_refused(doc, tmp_path):
    with pytest.raises(ExportError, match="Cannot export to “.gif”"):
        export_document(doc, ExportOptions(path=str(tmp_path / "out.gif")))
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ExportError, match="folder"):
        export_document(doc, ExportOptions().with_path(tmp_path / "dir.png"))


def test_the_extension_decides_the_format(doc, tmp_path):
    path = export_document(doc, ExportOptions(path=str(tmp_path / "x.webp"), format="PNG", lossless=True))
    with Image.open(path) as img:
        assert img.format == "WEBP"


def test_dialog_keeps_path_and_format_together(qtbot, tmp_path):
    dlg = ExportDialog(ExportOptions(path=str(tmp_path / "pic.png")), [(2, "top"), (1, "base")], has_selection=False)
    qtbot.addWidget(dlg)
    assert dlg.format == "PNG" and not dlg.selection_only.isEnabled()
    dlg.format_combo.setCurrentIndex(dlg.format_combo.findData("JPEG"))
    assert dlg.path_edit.text().endswith("pic.jpg") and not dlg.quality.isHidden()
    dlg.path_edit.setText(str(tmp_path / "pic.webp"))
    dlg.path_edit.textEdited.emit(dlg.path_edit.text())
    assert dlg.format == "WEBP" and not dlg.lossless.isHidden()
    dlg.lossless.setChecked(True)
    assert not dlg.quality.isEnabled()
    dlg.one_layer.setChecked(True)
    dlg.layer_combo.setCurrentIndex(1)
    opts = dlg.options()
    assert (opts.format, opts.lossless, opts.layer_id, opts.selection_only) == ("WEBP", True, 1, False)
    assert set(dlg._formats) >= {"PNG", "JPEG", "WEBP", "TIFF"}


def test_export_and_export_again_from_the_window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    win = MainWindow(AppSettings.in_memory(), probe_device=False)
    qtbot.addWidget(win)
    source = write_png(tmp_path / "photo.png", smooth_rgba())
    assert win.open_path(source)
    asked = []

    def answer(parent, initial, layers, has_selection):
        asked.append(initial)
        return ExportOptions(quality=90).with_path(tmp_path / "out.jpg")

    monkeypatch.setattr(export_dialog, "ask_export_options", answer)
    assert win.actions_by_key["export"].shortcut().toString() == "Ctrl+E"
    assert win.actions_by_key["export_again"].shortcut().toString() == "Ctrl+Shift+E"
    win.actions_by_key["export_again"].trigger()  # nothing exported yet: it asks
    assert len(asked) == 1 and asked[0].path != source  # never suggests writing over the opened picture
    first = (tmp_path / "out.jpg").read_bytes()
    win.document.fill_edit_mask()
    win.document.add_layer(np.full((48, 64, 4), (0, 0, 0, 255), np.uint8), "black")
    win.actions_by_key["export_again"].trigger()  # same file, same settings, no dialog
    assert len(asked) == 1 and (tmp_path / "out.jpg").read_bytes() != first
    assert read(tmp_path / "out.jpg")[0][..., :3].max() < 30
    win.actions_by_key["export"].trigger()  # the dialog opens with the last settings for this picture
    assert len(asked) == 2 and asked[1].path == str(tmp_path / "out.jpg") and asked[1].quality == 90
    win.document.undo_stack.setClean()


def test_encode_refuses_a_format_it_cannot_write(qapp):
    with pytest.raises(ExportError):
        export.encode(np.zeros((2, 2, 4), np.uint8), ExportOptions(format="GIF"))
