"""The instant drag's latent warp and hole filling, on synthetic latents (no model)."""
import torch

from core.methods.quick_drag.warp import (Disc, disc_around_mask, disc_around_points, displacement_field,
                                          fill_holes, plan_warp, stretch_factor, cell_centres)


def _latent(h=24, w=24, seed=0):
    return torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed))


def _warp(x, handles, targets, disc, falloff=0.5):
    handles, targets = torch.tensor(handles, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)
    field = displacement_field(tuple(x.shape[-2:]), handles, targets, disc, falloff)
    plan = plan_warp(field)
    return plan, plan.apply(x)


def test_the_warp_moves_a_feature_patch_to_the_target_exactly():
    x = _latent()
    plan, out = _warp(x, [[8.0, 10.0]], [[14.0, 13.0]], Disc(12.0, 12.0, 11.5))
    # the 3x3 patch around the handle (x 7..9, y 9..11) lands around the target (x 13..15, y 12..14)
    assert torch.equal(out[..., 12:15, 13:16], x[..., 9:12, 7:10])
    # control: the unwarped latent does not already hold the patch there
    assert not torch.allclose(x[..., 12:15, 13:16], x[..., 9:12, 7:10])


def test_several_handles_each_take_their_own_patch_along():
    x = _latent(32, 32, seed=1)
    _, out = _warp(x, [[6.0, 6.0], [25.0, 25.0]], [[10.0, 6.0], [25.0, 20.0]], Disc(16.0, 16.0, 22.0))
    assert torch.equal(out[..., 5:8, 9:12], x[..., 5:8, 5:8])
    assert torch.equal(out[..., 19:22, 24:27], x[..., 24:27, 24:27])


def test_holes_are_filled_from_the_nearest_intact_cells_on_four_sides():
    x = torch.zeros(1, 1, 3, 5)
    x[0, 0, 1] = torch.tensor([1.0, 0.0, 0.0, 4.0, 8.0])
    x[0, 0, 0, 1], x[0, 0, 2, 1] = 10.0, 20.0
    holes = torch.zeros(3, 5, dtype=torch.bool)
    holes[1, 1:3] = True
    out = fill_holes(x, holes)
    # cell (row 1, col 1): left 1 at distance 1, right 4 at distance 2, up 10 and down 20 at distance 1
    assert torch.isclose(out[0, 0, 1, 1], torch.tensor((1 * 1 + 4 * 0.5 + 10 + 20) / 3.5))
    # cell (row 1, col 2): left 1 at 2, right 4 at 1, up 0 and down 0 at 1
    assert torch.isclose(out[0, 0, 1, 2], torch.tensor((1 * 0.5 + 4 * 1 + 0 + 0) / 3.5))
    assert torch.equal(out[~holes.expand_as(out)], x[~holes.expand_as(x)])  # intact cells untouched


def test_a_stretching_drag_leaves_holes_and_none_survive_the_filling():
    x = _latent()
    plan, out = _warp(x, [[10.0, 12.0]], [[16.0, 12.0]], Disc(12.0, 12.0, 11.5), falloff=1.0)
    holes = plan.holes
    assert holes.any()  # behind the handle the content stretches: cells nobody lands on
    assert torch.isfinite(out).all()
    # each filled value is a weighted mean of intact cells: inside their range, and not the old value
    assert (out[..., holes] <= x.max()).all() and (out[..., holes] >= x.min()).all()
    assert not torch.equal(out[..., holes], x[..., holes])


def test_handle_on_its_target_is_the_identity_and_far_cells_never_change():
    x = _latent()
    disc = Disc(12.0, 12.0, 6.0)
    plan, out = _warp(x, [[12.0, 12.0]], [[12.0, 12.0]], disc)
    assert torch.equal(out, x) and not plan.holes.any()
    plan, out = _warp(x, [[11.0, 12.0]], [[14.0, 12.0]], disc)
    far = (cell_centres(24, 24) - torch.tensor([12.0, 12.0])).norm(dim=-1) > disc.r + 3.5
    assert not torch.equal(out, x)
    assert torch.equal(out[..., far], x[..., far])


def test_the_move_is_full_at_the_handle_and_fades_to_nothing_at_the_edge():
    cells = cell_centres(24, 24)
    disc = Disc(12.0, 12.0, 10.0)
    a = torch.tensor([12.0, 12.0])
    linear = stretch_factor(cells, a, disc, falloff=1.0)
    assert linear[12, 12] == 1.0 and torch.isclose(linear[12, 17], torch.tensor(0.5))  # halfway out
    assert linear[12, 22] == 0.0 and linear[0, 0] == 0.0
    rigid_core = stretch_factor(cells, a, disc, falloff=0.5)
    assert rigid_core[12, 17] == 1.0 and torch.isclose(rigid_core[12, 19], torch.tensor(0.6))


def test_where_moves_collide_the_longer_move_wins_deterministically():
    field = torch.zeros(1, 6, 2)
    field[0, 1, 0] = 2.0   # cell 1 jumps onto cell 3
    field[0, 2, 0] = 1.0   # cell 2 also lands on cell 3
    plan = plan_warp(field)
    assert plan.source.tolist() == [0, -1, -1, 1, 4, 5]
    assert plan.holes.tolist() == [[False, True, True, False, False, False]]


def test_cells_outside_the_movable_area_are_neither_moved_nor_written():
    field = torch.zeros(1, 6, 2)
    field[0, 1, 0] = 3.0   # would land on cell 4, which is fixed
    movable = torch.tensor([[True, True, True, True, False, False]])
    plan = plan_warp(field, movable)
    assert plan.source.tolist() == [0, -1, 2, 3, 4, 5]


def test_regions_hold_their_points():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 4:12] = True
    pts = torch.tensor([[5.0, 5.0], [15.0, 15.0]])
    disc = disc_around_mask(mask, pts)
    assert (disc.cx, disc.cy) == (7.5, 5.5)
    assert all(float((p - torch.tensor([disc.cx, disc.cy])).norm()) <= disc.r - 1 + 1e-5 for p in pts)
    h, t = torch.tensor([[4.0, 4.0]]), torch.tensor([[10.0, 4.0]])
    assert disc_around_points(h, t, margin=1.0).r == 3.0 + 6.0 + 1.0
