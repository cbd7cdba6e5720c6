"""The continuous stage's data term, ``sum_c (m_c(x + u(x)) - f_c(x))^2``, with its gradient in one pass.

Why not ``grid_sample`` and autograd: on the CPU, PyTorch's 3D ``grid_sample``
loops over channels voxel by voxel, forward and backward, and autograd keeps
the warped map for the backward pass. With descriptors of tens of channels that
was most of the Adam stage's time. Here the moving descriptors are stored channels-last, so
each trilinear corner is one gather of contiguous rows, and the gradient with
respect to the displacement is formed in the forward pass from the eight
corner dot products ``r . m_k`` (``r`` the residual): the backward pass is a
few multiply-adds per voxel and nothing of size ``channels x voxels`` is kept.

Semantics are exactly those of ``descriptors.warp`` (``grid_sample``,
trilinear, ``align_corners=True``, border padding): positions are clamped to
the grid and the gradient is zero where they were clamped, as in PyTorch.
The whole grid goes through each operation at once: split into cache-sized
chunks it was as fast on an idle machine, but each of the many small
operations then waits for both cores, which on a busy machine made an
iteration ten times slower. The eight gathered corners are kept for the dot
products in a caller's workspace when one is given (the Adam loop passes one
when it fits); without it each corner is gathered again, and only two
(voxels, channels) buffers exist.
"""

from __future__ import annotations

import torch

_CORNERS = [(cx, cy, cz) for cx in (0, 1) for cy in (0, 1) for cz in (0, 1)]


def _corner_terms(p: torch.Tensor, hi: torch.Tensor):
    """Clamped positions -> base corner index (N, 3), fractions (N, 3) and the in-range mask (N, 3)."""
    inside = (p >= 0) & (p <= hi)
    q = torch.minimum(p.clamp_min(0.0), hi)
    base = q.floor().clamp(max=(hi - 1).clamp_min(0))
    return base.long(), q - base, inside


class WarpedSSD(torch.autograd.Function):
    """Per-voxel SSD between ``moving`` read at ``x + disp`` and ``fixed`` at ``x``.

    ``moving``/``fixed``: (V, D) channels-last over a grid of ``shape``; ``disp``:
    (3, X, Y, Z) in voxels of that grid. Returns (X, Y, Z).
    """

    @staticmethod
    def forward(ctx, disp, moving, fixed, shape, workspace=None):
        x, y, z = shape
        hi = torch.tensor([x - 1, y - 1, z - 1], dtype=disp.dtype, device=disp.device)
        idx = torch.stack(
            torch.meshgrid(*[torch.arange(n, dtype=disp.dtype, device=disp.device) for n in shape], indexing="ij"), -1
        ).reshape(-1, 3)
        base, w, inside = _corner_terms(idx + disp.detach().reshape(3, -1).T, hi)
        strides = [y * z if x > 1 else 0, z if y > 1 else 0, 1 if z > 1 else 0]
        flat = base[:, 0] * (y * z) + base[:, 1] * z + base[:, 2]
        lo_hi = [(1.0 - w[:, a], w[:, a]) for a in range(3)]  # per-axis factors of the lower/upper corner
        kept = workspace is not None and workspace.shape == (8, *fixed.shape)
        row = None if kept else torch.empty_like(fixed)  # else one gathered corner, gathered twice

        def corner(k, again=False):
            if kept and again:
                return workspace[k]
            c = _CORNERS[k]
            return torch.index_select(
                moving, 0, flat + sum(c[a] * strides[a] for a in range(3)), out=workspace[k] if kept else row
            )

        def factor(k, a):
            return lo_hi[a][_CORNERS[k][a]]

        r = -fixed  # (V, D) residual, accumulated corner by corner
        for k in range(8):
            r.addcmul_(corner(k), (factor(k, 0) * factor(k, 1) * factor(k, 2))[:, None])
        ssd = r.pow(2).sum(1)
        # d ssd / d w_a = sum_k 2 (r . m_k) * sign_a(k) * (the other two factors of k)
        grad = torch.zeros((3, len(flat)), dtype=w.dtype, device=w.device)
        for k in range(8):
            c = corner(k, again=True)
            dot = torch.mul(c, r, out=c).sum(1).mul_(2.0)  # the gathered corner is not needed again
            f = [factor(k, a) for a in range(3)]
            for a in range(3):
                term = f[(a + 1) % 3] * f[(a + 2) % 3] * dot
                if _CORNERS[k][a]:
                    grad[a].add_(term)
                else:
                    grad[a].sub_(term)
        ctx.save_for_backward(grad * inside.T)
        ctx.shape = shape
        return ssd.reshape(shape)

    @staticmethod
    def backward(ctx, upstream):
        (grad,) = ctx.saved_tensors
        return (grad * upstream.reshape(1, -1)).reshape(3, *ctx.shape), None, None, None, None


def warped_ssd(
    disp: torch.Tensor,
    moving_last: torch.Tensor,
    fixed_last: torch.Tensor,
    shape,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-voxel SSD (X, Y, Z), differentiable in ``disp`` only (see :class:`WarpedSSD`).

    ``workspace``: an (8, V, D) buffer, reused across calls, that keeps the eight gathered
    corners for the gradient instead of gathering them again (a fifth faster).
    """
    return WarpedSSD.apply(disp, moving_last, fixed_last, tuple(int(n) for n in shape), workspace)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """(D, X, Y, Z) -> contiguous (X*Y*Z, D)."""
    return t.reshape(t.shape[0], -1).T.contiguous()


__all__ = ["warped_ssd", "channels_last", "WarpedSSD"]
