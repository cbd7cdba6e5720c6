"""The registration's hand-written kernels equal the plain PyTorch definitions they replace.

Each kernel exists for speed only (see its docstring), so each is checked against the
straightforward formulation: ``avg_pool3d`` for the box filter, the strided-view SSD
for the cost volume, ``grid_sample`` with autograd for the warped SSD and its gradient.
Shapes are odd and unequal, and displacements reach beyond the grid, so the border
rules are covered.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from MedDIFTLib.registration.convex import cost_volume, displacement_table
from MedDIFTLib.registration.descriptors import box3, warp
from MedDIFTLib.registration.warped_ssd import channels_last, warped_ssd


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (5, 9, 7, 11), (1, 3, 3, 3)])
def test_box3_equals_avg_pool_without_padding_counts(shape):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = F.avg_pool3d(x[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    assert torch.allclose(box3(x), ref, atol=1e-12)


def test_box3_keeps_a_constant_and_handles_single_voxel_axes():
    x = torch.full((2, 1, 5, 4), 3.5)
    assert torch.allclose(box3(x), x)


def _cost_reference(fixed, moving, pool, table):
    f = F.avg_pool3d(fixed[None], pool, stride=pool)[0]
    cx, cy, cz = f.shape[1:]
    m = F.avg_pool3d(moving[None], pool, stride=1)[0]
    reach = int(table.abs().max().item())
    m = F.pad(m[None], [reach] * 6, mode="replicate")[0]
    out = torch.empty((table.shape[0], cx, cy, cz), dtype=fixed.dtype)
    for n, (di, dj, dk) in enumerate(table.long().tolist()):
        i0, j0, k0 = reach + di, reach + dj, reach + dk
        view = m[:, i0 : i0 + pool * cx : pool, j0 : j0 + pool * cy : pool, k0 : k0 + pool * cz : pool]
        out[n] = (view - f).pow(2).sum(0)
    for _ in range(2):
        out = F.avg_pool3d(out[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    return out


@pytest.mark.parametrize(
    "pool, steps, step, shape", [(3, 2, 1, (13, 12, 14)), (4, 2, 3, (17, 16, 21)), (2, 3, 1, (9, 10, 8))]
)
def test_cost_volume_equals_the_strided_ssd(pool, steps, step, shape):
    g = torch.Generator().manual_seed(2)
    fixed, moving = torch.randn(6, *shape, generator=g), torch.randn(6, *shape, generator=g)
    table = displacement_table(steps, step)
    got = cost_volume(fixed, moving, pool, table)
    ref = _cost_reference(fixed, moving, pool, table)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    # and it is a cost: zero shift of identical maps is the minimum everywhere
    same = cost_volume(fixed, fixed, pool, table)
    assert torch.equal(same.argmin(0), torch.full(same.shape[1:], table.shape[0] // 2))


@pytest.mark.parametrize("shape, channels", [((9, 7, 11), 5), ((6, 1, 8), 3), ((20, 18, 16), 24)])
def test_warped_ssd_and_its_gradient_equal_grid_sample_with_autograd(shape, channels):
    g = torch.Generator().manual_seed(3)
    fixed, moving = torch.randn(channels, *shape, generator=g), torch.randn(channels, *shape, generator=g)
    disp = torch.randn(3, *shape, generator=g) * 4.0  # many positions fall outside: border rule
    u1 = disp.clone().requires_grad_(True)
    ref = (warp(moving, u1) - fixed).pow(2).sum(0)
    (ref * torch.linspace(0.5, 2.0, ref.numel()).view(ref.shape)).sum().backward()
    for workspace in (None, torch.empty(8, math.prod(shape), channels)):  # corners gathered twice, or kept
        u2 = disp.clone().requires_grad_(True)
        got = warped_ssd(u2, channels_last(moving), channels_last(fixed), shape, workspace)
        (got * torch.linspace(0.5, 2.0, got.numel()).view(got.shape)).sum().backward()
        assert torch.allclose(got, ref, atol=1e-4, rtol=1e-5)
        assert (u2.grad - u1.grad).abs().max() <= 1e-5 * u1.grad.abs().max()  # float32 rounding
    assert u2.grad.abs().max() > 0.1  # a real gradient, not zeros on both sides


@pytest.mark.parametrize("steps, step, pool, cells", [(6, 2, 4, (9, 8, 10)), (2, 1, 3, (5, 7, 6))])
def test_coupled_convex_gives_the_packages_answers(steps, step, pool, cells):
    """Our arithmetic (one matrix product per slice) against convexAdam's own block, same scheme."""
    from convexAdam.convex_adam_utils import coupled_convex as package_block

    from MedDIFTLib.registration.convex import coupled_convex

    table = displacement_table(steps, step)
    raw = torch.rand(table.shape[0], *cells, generator=torch.Generator().manual_seed(4))
    cost = F.avg_pool3d(raw[None], 3, stride=1, padding=1)[0]  # smooth, as real costs are
    ours = coupled_convex(cost, table, pool)
    mesh = (table / pool).T.reshape(3, -1, 1)
    ref = package_block(cost, cost.argmin(0), mesh, 1, cells)[0] * pool
    assert ours.shape == (3, *cells)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert ours.abs().max() > 0  # the cost is random: the answers are not all zero shifts


@pytest.mark.parametrize("size", [1, 2, 4])
def test_box_filter_equals_avg_pool(size):
    from MedDIFTLib.registration.descriptors import box_filter

    x = torch.randn(3, 9, 7, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ref = F.avg_pool3d(x[None], size, stride=1)[0]
    assert torch.allclose(box_filter(x, size), ref, atol=1e-12)


def test_the_shift_loop_runs_on_one_thread_and_restores_torch_s_setting():
    from MedDIFTLib.registration.convex import one_thread

    before = torch.get_num_threads()
    seen = []
    with one_thread(torch.device("cpu")):
        seen.append(torch.get_num_threads())
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with one_thread(torch.device("cpu")):
            raise ValueError("a failure inside")
    assert torch.get_num_threads() == before
    table = displacement_table(1, 1)
    cost_volume(torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8), 2, table)
    assert torch.get_num_threads() == before
