"""The refinement stage: the body mask that weights its data term, the weighted Adam loop, the
coarse-to-fine schedule and the thread count it picks on busy cores."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy import ndimage

from MedDIFTLib.data.geometry import Volume, make_ijk_to_ras
from MedDIFTLib.errors import InputError
from MedDIFTLib.registration import RegistrationOptions
from MedDIFTLib.registration import mask as mask_module
from MedDIFTLib.registration.adam import instance_optimise
from MedDIFTLib.registration.convex import cpu_threads, free_cores
from MedDIFTLib.registration.dense import _adam_levels, _grid_weights
from MedDIFTLib.registration.descriptors import covering_axis_grid
from MedDIFTLib.registration.mask import SKIN_MARGIN_MM, body_mask, body_weights


def _ct_with_table(spacing=(2.0, 2.0, 4.0)) -> Volume:
    """Air, an elliptic body (0 HU) with a lung (-850 HU) inside, and a table (+200 HU) below it, apart."""
    shape = (60, 60, 10)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    body = ((i - 30) / 22.0) ** 2 + ((j - 32) / 16.0) ** 2 <= 1.0
    lung = ((i - 30) / 8.0) ** 2 + ((j - 32) / 6.0) ** 2 <= 1.0
    a = np.full(shape, -1000.0, dtype=np.float32)
    a[body] = 0.0
    a[lung] = -850.0
    a[5:55, 8:11, :] = 200.0  # the table: 4 voxels (8 mm) below the body's lowest row (j = 16)
    return Volume(a, make_ijk_to_ras(spacing, (0.0, 0.0, 0.0)), "ct")


def test_the_body_mask_fills_the_lungs_and_drops_the_table_apart_from_the_body():
    ct = _ct_with_table()
    plain = body_mask(ct)
    assert plain[30, 32, 5] and plain[30, 9, 5]  # the lung is filled; without `largest` the table stays
    m = body_mask(ct, largest=True)
    assert m[30, 32, 5] and m[30, 20, 5]  # lung and body
    assert not m[30, 9, 5] and not m[2, 2, 5]  # the table and the air around
    grown = body_mask(ct, largest=True, margin_mm=SKIN_MARGIN_MM)
    # the body's lowest row is j = 16; 5 mm of margin at 2 mm voxels adds rows 14 and 15 (2 and 4 mm), not 13
    assert grown[30, 14, 5] and not grown[30, 13, 5] and not grown[30, 9, 5]


def test_lungs_that_reach_the_edge_of_a_cropped_scan_are_body():
    ct = _ct_with_table()
    crop = Volume(ct.array[26:].copy(), ct.ijk_to_ras.copy(), "crop")  # the lung (i 22..38) now reaches i = 0
    assert not body_mask(crop)[0, 32, 5]  # not enclosed: filling holes leaves it out
    m = body_mask(crop, largest=True)
    assert m[0, 32, 5] and m[4, 32, 5] and not m[4, 9, 5]  # the lung is in, the table still out


def test_a_scan_without_air_below_the_threshold_is_all_body_as_an_mr_scan_would_be():
    mr = Volume(np.random.default_rng(0).uniform(0, 900, (12, 12, 12)).astype(np.float32), np.eye(4), "mr")
    assert body_mask(mr, largest=True).all()
    w = body_weights(mr)
    assert w.array.dtype == np.float32 and w.array.min() == 1.0


@pytest.mark.parametrize("budget", [None, 9000])  # 9000 of 36000 voxels: masked on every 2nd voxel
def test_grid_weights_follow_the_mask_in_world_coordinates_and_ignore_a_mask_of_almost_nothing(budget, monkeypatch):
    ct = _ct_with_table()
    if budget:
        monkeypatch.setattr(mask_module, "MASK_VOXELS", budget)
    w = body_weights(ct)
    assert w.shape == ((30, 30, 5) if budget else ct.shape)
    grid = covering_axis_grid(ct.grid, 4.0)
    gw = _grid_weights(w, grid, torch.device("cpu"))
    assert gw is not None and gw.shape == grid.shape
    # read against the full-resolution mask in world coordinates: two grid voxels (8 mm) from its edge, the
    # trilinear weight is exactly 1 inside and 0 outside, strided or not (a stride of 2 moves the edge 4 mm)
    full = body_mask(ct, largest=True, margin_mm=SKIN_MARGIN_MM)
    ijk = np.rint(ct.world_to_ijk(grid.points().reshape(-1, 3))).astype(int)
    nearest = full[tuple(np.clip(ijk, 0, np.asarray(ct.shape) - 1).T)].reshape(grid.shape)
    inside = ndimage.binary_erosion(nearest, iterations=2)
    outside = ndimage.binary_erosion(~nearest, iterations=2)
    assert inside.any() and outside.any()
    assert np.all(gw.numpy()[inside] == 1.0) and np.all(gw.numpy()[outside] == 0.0)
    tiny = ct.with_array(np.zeros(ct.shape, dtype=np.float32))
    tiny.array[30, 30, 5] = 1.0
    assert _grid_weights(tiny, grid, torch.device("cpu")) is None


def _body_over_a_table():
    """Smooth random descriptors (unit spread) of a "body" that moves 1.5 voxels along i, over a
    "table" slab (``i < 8``) that stays where it is: the fixed and moving maps on one grid."""
    g = torch.Generator().manual_seed(0)
    base = torch.from_numpy(ndimage.gaussian_filter(torch.randn(4, 34, 16, 16, generator=g).numpy(), (0, 2, 2, 2)))
    base = (base / base.std()).float()
    fixed = base[:, 4:30].contiguous()
    i = torch.arange(4, 30, dtype=torch.float32) + 1.5  # moving(x) = body(x + 1.5): the field is -1.5
    lo = i.floor().long()
    frac = (i - lo).view(1, -1, 1, 1)
    moving = (1 - frac) * base[:, lo] + frac * base[:, lo + 1]
    moving[:, :8] = fixed[:, :8]
    return fixed, moving


def test_zero_weights_leave_the_table_to_the_regulariser_and_ones_are_the_plain_mean():
    fixed, moving = _body_over_a_table()
    init = torch.zeros(3, *fixed.shape[1:])
    weights = torch.ones(fixed.shape[1:])
    weights[:8] = 0.0
    ones = instance_optimise(fixed, moving, init, lam=0.5, iterations=5, weights=torch.ones_like(weights))
    # all-ones weights are the plain mean: the same arithmetic up to the order of the float32 sums
    assert torch.allclose(ones, instance_optimise(fixed, moving, init, lam=0.5, iterations=5), atol=1e-4)
    plain = instance_optimise(fixed, moving, init, lam=0.5, iterations=40)
    masked = instance_optimise(fixed, moving, init, lam=0.5, iterations=40, weights=weights)
    table_plain, table_masked = float(plain[0, :6].mean()), float(masked[0, :6].mean())
    # unweighted, the table's own data holds it still; weighted, it has no say and the field there is the
    # regulariser's continuation of the body's motion (-1.5 voxels), so it moves clearly towards it
    assert abs(table_plain) < 0.15 and table_masked < -0.3, (table_plain, table_masked)
    # the body itself is matched either way (0.1 voxel: 40 Adam steps of at most one voxel, not converged)
    for u in (plain, masked):
        assert float((u[0, 12:22] + 1.5).abs().mean()) < 0.1


def test_the_schedule_ends_on_the_registration_grid_unless_asked_not_to():
    assert _adam_levels(RegistrationOptions()) == [(2, 80, 1.0), (1, 30, 0.5)]
    assert _adam_levels(RegistrationOptions(fine_iterations=0)) == [(2, 80, 1.0)]
    assert _adam_levels(RegistrationOptions(adam_pool=1)) == [(1, 80, 1.0)]
    with pytest.raises(InputError, match="fine_iterations must be zero or more"):
        RegistrationOptions(fine_iterations=-1)


def test_free_cores_counts_the_allowed_cores_less_the_others_load(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # this process alone
    assert free_cores() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (3.2, 3.0, 3.0))  # two other busy threads
    assert free_cores() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (20.0, 20.0, 20.0))  # far more than the cores
    assert free_cores() == 1
    before = torch.get_num_threads()
    with cpu_threads(torch.device("cpu"), 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
