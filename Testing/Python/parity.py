"""What "the same match" means when two computations of the similarity sum in different orders.

Every exactness test of the matcher says which of two kinds it checks:

* **same computation** (the same code path on the same device, summing in the same order): the
  answers are compared bit for bit;
* **different summation order** (native dot maps against upsampled descriptors, a window against the
  masked whole lattice, the engine against the dense reference): the argmax of two float32 sums that
  differ by rounding can flip between two voxels whose scores are a near tie, and which one wins
  depends on the CPU's vector instructions. Such paths are held to *the same voxel, or a tie*: where
  the voxels differ, the reference similarity (:func:`dense_reference.brute_force_similarity`) at
  both answers agrees within float32 rounding, and such ties stay rare.
"""

from __future__ import annotations

import numpy as np

from dense_reference import brute_force_similarity

# A float32 mean of cosines over 4 levels of up to a few hundred channels: each dot product carries a
# relative rounding error of about channels * 2^-24 (< 2e-5 for 256 channels at |cos| <= 1). Scores
# closer than this are a tie that another summation order may break the other way.
SCORE_ROUNDING = 2e-5

# Ties are rare on noisy features (one in 72 queries was seen on one CPU); more than this many
# differing answers is a real difference, not rounding.
MAX_TIED_SHARE = 0.1


def same_or_tied(
    voxel_a, voxel_b, fixed, moving, points, tol: float = SCORE_ROUNDING, max_tied_share: float = MAX_TIED_SHARE
) -> np.ndarray:
    """Assert that two answers are the same voxel or a near tie; return the mask of identical rows.

    Args:
        voxel_a, voxel_b: (N, 3) integer peaks on the moving pyramid's grid.
        fixed, moving: the feature pyramids both answers were computed from.
        points: (N, 3) the queries (RAS mm), for the reference scores of the differing rows.
    """
    voxel_a, voxel_b = np.asarray(voxel_a), np.asarray(voxel_b)
    same = np.all(voxel_a == voxel_b, axis=1)
    differ = np.flatnonzero(~same)
    if differ.size:
        sim = brute_force_similarity(fixed, moving, np.asarray(points)[differ]).double().numpy()
        for row, i in enumerate(differ):
            sa, sb = sim[(row, *voxel_a[i])], sim[(row, *voxel_b[i])]
            assert abs(sa - sb) <= tol, (
                f"query {i}: voxels {voxel_a[i]} and {voxel_b[i]} differ and their "
                f"reference scores {sa:.7f} and {sb:.7f} are not a tie"
            )
    assert differ.size <= max_tied_share * len(same), f"{differ.size} of {len(same)} answers differ"
    return same
