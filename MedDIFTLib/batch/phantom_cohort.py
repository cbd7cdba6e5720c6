"""A longitudinal phantom cohort on disk, with exact ground truth: the tests and the benchmark
of ``meddift batch`` use it, and so can anyone trying the command without data.

Each patient (a phantom seed) has a baseline and follow-ups (the same anatomy breathing with
other amplitudes). The baseline's voxels do not depend on the amplitude (its noise is drawn
first from the seed), so every pair of a patient shares real scans, as in a study where a
baseline is matched to each follow-up and follow-ups to each other.
"""

from __future__ import annotations

import csv
import io
from itertools import permutations
from pathlib import Path

from ..atomic import write_text_atomic
from ..data.image_io import write_volume
from ..data.landmark_io import write_points
from ..data.points import PointSet


def write_phantom_cohort(
    folder,
    patients: int = 1,
    followups: int = 2,
    shape=(48, 48, 48),
    spacing=(6.5, 6.5, 6.5),
    landmarks: int = 8,
    pairs_per_patient: int | None = None,
    amplitudes=(10.0, 14.0, 18.0, 22.0),
) -> Path:
    """Write scans, landmarks, true positions and ``cohort.csv`` (relative paths) into ``folder``.

    Pairs per patient: baseline to each follow-up and back, then follow-up to follow-up, in that
    order, the first ``pairs_per_patient`` of them when given. Returns the CSV's path.
    """
    from ..evaluation.motion import BreathingMotion
    from ..evaluation.phantom import make_pair, sample_landmarks

    folder = Path(folder)
    (folder / "scans").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        seed = 11 + p
        motions = [None] + [BreathingMotion(amplitude_mm=amplitudes[k % len(amplitudes)]) for k in range(followups)]
        first = make_pair(shape=shape, spacing=spacing, seed=seed, motion=motions[1])
        base_pts = sample_landmarks(first, n=landmarks, seed=seed)
        assert base_pts.labels is not None  # PointSet.__post_init__ sets the labels
        scans, points = {}, {}
        for t, motion in enumerate(motions):
            name = f"p{p}_t{t}"
            vol = first.fixed if t == 0 else make_pair(shape=shape, spacing=spacing, seed=seed, motion=motion).moving
            scans[t] = f"scans/{name}.nii.gz"
            write_volume(vol, folder / scans[t])
            # only motions[0] (t == 0) is None
            pts = base_pts.points if t == 0 else motion.fixed_to_moving(base_pts.points)  # type: ignore[union-attr]
            points[t] = f"scans/{name}_points.csv"
            write_points(PointSet(pts, list(base_pts.labels), name=f"{name} truth"), folder / points[t])
        order = [(0, k) for k in range(1, len(motions))] + [(k, 0) for k in range(1, len(motions))]
        order += [(a, b) for a, b in permutations(range(1, len(motions)), 2)]
        for a, b in order[:pairs_per_patient]:
            rows.append((f"p{p}_t{a}_to_t{b}", scans[a], scans[b], points[a], points[b]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "fixed", "moving", "points", "truth"])
    w.writerows(rows)
    return write_text_atomic(folder / "cohort.csv", buf.getvalue())


__all__ = ["write_phantom_cohort"]
