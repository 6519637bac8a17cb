"""The document model and its undo commands, without any window."""
import numpy as np
import pytest

from editor_app.document import Document, fit_to_canvas
from tests.editor_helpers import sample_rgba


@pytest.fixture
def doc(qapp):
    d = Document()
    d.load_image(sample_rgba(), "base")
    return d


def test_every_layer_operation_undoes_and_redoes(doc):
    base = doc.layers[0]
    top = doc.add_layer(sample_rgba(seed=1), "top")
    doc.rename_layer(top, "renamed")
    doc.set_layer_opacity(top, 0.5)
    doc.set_layer_opacity(top, 0.25)  # merges with the previous opacity change
    doc.set_layer_visible(base, False)
    dup = doc.duplicate_layer(base)
    doc.move_layer(dup, 2)
    doc.set_layer_mask(top, np.full((48, 64), 128, np.uint8))
    doc.remove_layer(dup)
    states = []
    stack = doc.undo_stack
    snapshot = lambda: [(l.id, l.name, l.opacity, l.visible, None if l.mask is None else int(l.mask.sum()))
                        for l in doc.layers]
    states.append(snapshot())
    assert stack.count() == 8
    while stack.canUndo():
        stack.undo()
        states.append(snapshot())
    assert states[-1] == [(base.id, "base", 1.0, True, None)]
    assert [(top.id, "renamed", 0.25, True, None)] == [s for s in states[-7] if s[0] == top.id]
    while stack.canRedo():
        stack.redo()
    assert snapshot() == states[0]


def test_merge_down_composites_and_undo_restores(doc):
    base_before = doc.layers[0].pixels.copy()
    top_px = np.zeros((48, 64, 4), np.uint8)
    top_px[10:20, 10:20] = (255, 0, 0, 255)
    top = doc.add_layer(top_px, "red square")
    doc.set_layer_opacity(top, 1.0)
    doc.merge_down(top)
    assert len(doc.layers) == 1
    merged = doc.layers[0].pixels
    assert tuple(merged[15, 15]) == (255, 0, 0, 255)
    assert np.array_equal(merged[30:, 30:], base_before[30:, 30:])
    doc.undo_stack.undo()
    assert len(doc.layers) == 2 and np.array_equal(doc.layers[0].pixels, base_before)


def test_mask_stroke_is_one_undo_entry_and_respects_hardness(doc):
    stroke = doc.begin_mask_stroke()
    stroke.stroke_to(10, 10, 10, 1.0)
    stroke.stroke_to(40, 10, 10, 1.0)
    stroke.finish()
    mask = doc.edit_mask_array()
    assert mask[10, 25] == 255 and mask[30, 25] == 0  # along the line, and far from it
    assert doc.undo_stack.count() == 1
    soft = doc.begin_mask_stroke()
    soft.stroke_to(30, 35, 16, 0.0)
    soft.finish()
    m = doc.edit_mask_array()
    assert 0 < m[35, 36] < m[35, 31] <= 255  # a soft brush fades towards its edge
    eraser = doc.begin_mask_stroke(erase=True)
    eraser.stroke_to(25, 10, 6, 1.0)
    eraser.finish()
    assert doc.edit_mask_array()[10, 25] == 0
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert np.array_equal(doc.edit_mask_array(), mask)
    doc.undo_stack.undo()
    assert not doc.edit_mask_array().any()


def test_fill_invert_clear_edit_mask(doc):
    doc.fill_edit_mask()
    assert doc.edit_mask_array().min() == 255
    doc.invert_edit_mask()
    assert doc.edit_mask_array().max() == 0
    doc.fill_edit_mask()
    doc.clear_edit_mask()
    assert not doc.edit_mask_array().any()
    doc.undo_stack.undo()
    assert doc.edit_mask_array().min() == 255


def test_point_pairs_api(doc):
    doc.add_point_pair(1, 2, 3, 4)
    doc.add_point_pair(5, 6, 7, 8)
    doc.move_point(1, "handle", 9.5, 10.5)
    assert doc.point_pairs() == [(1, 2, 3, 4), (9.5, 10.5, 7, 8)]
    doc.set_point_pairs([(0, 0, 1, 1)])
    assert doc.point_pairs() == [(0, 0, 1, 1)]
    doc.undo_stack.undo()
    assert doc.point_pairs()[1] == (9.5, 10.5, 7, 8)
    doc.remove_point_pairs([0])
    assert doc.point_pairs() == [(9.5, 10.5, 7, 8)]
    with pytest.raises(ValueError):
        doc.set_point_pairs([(0, 0, float("nan"), 1)])


def test_add_result_layer_sits_above_its_source_with_metadata(doc):
    doc.add_layer(sample_rgba(seed=2), "other")
    source = doc.layers[0]
    result = doc.add_result_layer(sample_rgba(seed=3), "drag result", {"method": "drag", "params": {"steps": 3}},
                                  above=source)
    assert doc.index_of(result) == 1 and doc.active_layer.name == "other"  # the edit target stays
    assert result.metadata == {"method": "drag", "params": {"steps": 3}}
    assert np.array_equal(doc.layer_pixels(result), sample_rgba(seed=3))
    with pytest.raises(ValueError):
        doc.add_result_layer(np.zeros((5, 5, 4), np.uint8), "bad", {})
    doc.undo_stack.undo()
    assert result not in doc.layers


def test_accessors_return_copies(doc):
    doc.active_layer_pixels()[:] = 0
    doc.edit_mask_array()[:] = 255
    assert doc.layers[0].pixels.any() and not doc.edit_mask_array().any()


def test_fit_to_canvas_centres_other_sizes():
    out = fit_to_canvas(np.full((2, 2, 4), 9, np.uint8), 4, 4)
    assert out[1:3, 1:3].min() == 9 and out[0].max() == 0
    out = fit_to_canvas(np.full((8, 8, 4), 9, np.uint8), 4, 4)
    assert out.min() == 9
