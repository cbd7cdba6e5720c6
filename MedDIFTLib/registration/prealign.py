"""Automatic pre-alignment: a rigid (or affine) transform from the most reliable global feature matches.

A follow-up scan of a patient who lies differently can be shifted by several
centimetres and turned by degrees: more than the dense search range, and enough
for a local window to miss. Here both scans are described on a coarse grid,
fixed cells are matched *globally* into the moving scan, and only mutual
matches are kept (the moving cell's own best match lies back near the start).
Mirror-image and repeated structures (the other lung, the next rib) survive
that test now and then, so the transform is fitted robustly: RANSAC over
minimal three-point samples, then least-trimmed squares on the inliers
(ConvexAdam's ``least_trimmed_rigid``). The identity competes on the same
inlier count, so a pair that needs no pre-alignment keeps none.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..features.pyramid import FeaturePyramid
from .descriptors import covering_axis_grid, stacked_descriptors


def rotation_deg(m: np.ndarray) -> float:
    """Angle of the rotation in a 4x4 matrix (its linear part normalised by the scale)."""
    r = m[:3, :3] / np.cbrt(abs(np.linalg.det(m[:3, :3])))
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def coarse_descriptors(pyramid: FeaturePyramid, spacing_mm: float, levels=None, device=None):
    """Descriptors averaged over cells of ``spacing_mm`` covering the scan: ((N, D) unit rows, (N, 3) RAS)."""
    fine = covering_axis_grid(pyramid.grid, spacing_mm / 2.0)
    d = stacked_descriptors(pyramid, fine.points(), levels, device)
    d = F.avg_pool3d(d[None], 2, stride=2)[0]
    cells = fine.pooled(2)
    flat = d.reshape(d.shape[0], -1).T
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return flat, cells.points().reshape(-1, 3)


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Batched least-squares rigid fit: src, dst (T, n, 3) -> (T, 4, 4) with dst ~ R src + t."""
    cs, cd = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    h = np.einsum("tni,tnj->tij", src - cs, dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("tji,tkj->tik", vt, u)))
    diag = np.ones((len(src), 3))
    diag[:, 2] = d
    r = np.einsum("tji,tj,tkj->tik", vt, diag, u)
    m = np.tile(np.eye(4), (len(src), 1, 1))
    m[:, :3, :3] = r
    m[:, :3, 3] = cd[:, 0] - np.einsum("tij,tj->ti", r, cs[:, 0])
    return m


def mutual_matches(
    fixed: FeaturePyramid,
    moving: FeaturePyramid,
    spacing_mm: float,
    n_queries: int = 3000,
    levels=None,
    seed: int = 0,
    device=None,
):
    """Global mutual nearest-neighbour matches between coarse cells: (fixed RAS, moving RAS, similarity)."""
    fd, fp = coarse_descriptors(fixed, spacing_mm, levels, device)
    md, mp = coarse_descriptors(moving, spacing_mm, levels, device)
    # the most distinctive fixed cells: least like the scan's average descriptor (air and flat tissue are alike)
    typical = fd.mean(0)
    typical = typical / typical.norm().clamp_min(1e-8)
    order = torch.argsort(fd @ typical)
    pick: torch.Tensor | np.ndarray  # indices into the fixed cells, then the same on the CPU
    pick = order[: min(n_queries, len(order) // 2 or 1)]
    q = fd[pick]
    best = (q @ md.T).max(1)
    back = (md[best.indices] @ fd.T).argmax(1).cpu().numpy()
    pick, hit, sim = pick.cpu().numpy(), best.indices.cpu().numpy(), best.values.cpu().numpy()
    keep = np.flatnonzero(np.linalg.norm(fp[back] - fp[pick], axis=1) <= 1.5 * spacing_mm)
    return fp[pick][keep], mp[hit][keep], sim[keep]


def ransac_rigid(
    src: np.ndarray, dst: np.ndarray, threshold_mm: float, trials: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Best rigid transform by inlier count over random 3-point samples; (4x4, inlier mask)."""
    n = len(src)
    if n < 3:
        return np.eye(4), np.zeros(n, bool)
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(n, 3, replace=False) for _ in range(trials)])
    models = kabsch(src[idx], dst[idx])
    pred = np.einsum("tij,nj->tni", models[:, :3, :3], src) + models[:, None, :3, 3]
    inl = np.linalg.norm(pred - dst[None], axis=2) < threshold_mm
    best = int(np.argmax(inl.sum(1)))
    return models[best], inl[best]


def least_trimmed(src: np.ndarray, dst: np.ndarray, affine: bool = False, iterations: int = 5) -> np.ndarray:
    """Refine on the better half of the pairs, repeatedly (ConvexAdam's least-trimmed squares)."""
    if not affine:
        from convexAdam.convex_adam_utils import least_trimmed_rigid

        h = lambda p: torch.from_numpy(np.c_[p, np.ones(len(p))]).float()  # noqa: E731
        return least_trimmed_rigid(h(src), h(dst), iter=iterations).double().numpy()
    keep = np.arange(len(src))
    m = np.eye(4)
    for _ in range(iterations):
        a = np.c_[src[keep], np.ones(len(keep))]
        sol, *_ = np.linalg.lstsq(a, dst[keep], rcond=None)
        m[:3, :3], m[:3, 3] = sol[:3].T, sol[3]
        res = np.linalg.norm(src @ m[:3, :3].T + m[:3, 3] - dst, axis=1)
        keep = np.argsort(res)[: max(4, len(src) // 2)]
    return m


def prealign(
    fixed: FeaturePyramid,
    moving: FeaturePyramid,
    spacing_mm: float,
    kind: str = "rigid",
    levels=None,
    seed: int = 0,
    device=None,
) -> tuple[np.ndarray, dict]:
    """The pre-alignment (4x4 RAS, fixed -> moving points) and a report of how it was found."""
    if kind == "none":
        return np.eye(4), {"prealign": "none"}
    src, dst, _ = mutual_matches(fixed, moving, spacing_mm, levels=levels, seed=seed, device=device)
    threshold = 1.5 * spacing_mm
    model, inl = ransac_rigid(src, dst, threshold, seed=seed)
    identity_inliers = int((np.linalg.norm(dst - src, axis=1) < threshold).sum())
    info = {"prealign": kind, "matches": int(len(src)), "inliers": int(inl.sum()), "identity_inliers": identity_inliers}
    if inl.sum() < max(6, 1.1 * identity_inliers):
        info["prealign_used"] = "identity (no transform explains more matches)"
        return np.eye(4), info
    m = least_trimmed(src[inl], dst[inl], affine=kind == "affine")
    info["prealign_used"] = kind
    info["translation_mm"] = [round(float(v), 2) for v in m[:3, 3]]
    info["rotation_deg"] = round(rotation_deg(m), 2)
    return m, info


__all__ = ["prealign", "mutual_matches", "ransac_rigid", "least_trimmed", "kabsch"]
