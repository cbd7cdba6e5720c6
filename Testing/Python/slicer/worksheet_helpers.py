"""Helpers of the worksheet tests: a tracking session on the phantom (baseline + follow-ups) with its
matches placed, a lesion measured on the baseline, and the pair's field built from the phantom's known
motion."""

from __future__ import annotations

import functools

import numpy as np

SHAPE, SPACING = (40, 40, 40), (6.0, 6.0, 6.0)


def phantom_session(slicer, n_follow_ups=2, mode="baseline", offset_mm=(0.0, 0.0, 0.0)):
    """A session whose follow-ups are the phantom's moving scan; each follow-up's matches are the true
    moving points plus ``offset_mm`` (a point match's error). Returns (session, pair, landmarks)."""
    from MedDIFTLib.data.points import PointSet
    from MedDIFTLib.evaluation.phantom import sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups
    from MedDIFTSceneLib.session import TrackingSession

    scene = slicer.mrmlScene
    pair = _pair()
    base = add_volume_node(scene, pair.fixed, "baseline")
    ups = [add_volume_node(scene, pair.moving, f"month {3 * t}") for t in range(1, n_follow_ups + 1)]
    lm = sample_landmarks(pair, n=4, seed=2)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    write_markups(points, lm, locked=False)
    session = TrackingSession.create(scene, base, points, ups, mode=mode)
    truth = pair.true_moving_points(lm.points) + np.asarray(offset_mm)
    for t in range(1, n_follow_ups + 1):
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"matched {t}")
        write_markups(node, PointSet(truth, lm.labels), locked=True)
        session.set_matched(t, node)
    return session, pair, lm


@functools.lru_cache(maxsize=1)
def _pair():
    """One phantom for every test (rendering it is most of a test's time; its volumes are copied into
    each scene, and no test changes it)."""
    from MedDIFTLib.evaluation.phantom import make_pair

    return make_pair(shape=SHAPE, spacing=SPACING, seed=2)


def baseline_line(slicer, pair, index=0, name="L1 diameter"):
    """A line across phantom lesion ``index`` (its diameter along R), as a reader would draw it."""
    centre, radius = pair.anatomy.lesions[index], float(pair.anatomy.lesion_radii[index])
    line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    for sign in (-1.0, 1.0):
        line.AddControlPointWorld(*(centre + sign * np.array([radius, 0.0, 0.0])))
    return line


def motion_field(pair):
    """The phantom's fixed -> moving motion sampled on the fixed grid, as a pair's dense field is
    (displacement (I, J, K, 3) RAS mm, IJK-to-RAS)."""
    grid = pair.fixed.grid
    centres = grid.voxel_centres()
    disp = (pair.true_moving_points(centres) - centres).reshape(*grid.shape, 3)
    return disp, grid.ijk_to_ras


def affine_field(pair, matrix, shift):
    """A displacement that is affine in RAS (``x -> matrix @ x + shift``) on the fixed grid: trilinear
    interpolation reproduces it exactly, so a carried point has one right answer."""
    grid = pair.fixed.grid
    centres = grid.voxel_centres()
    moved = centres @ np.asarray(matrix).T + np.asarray(shift)
    return (moved - centres).reshape(*grid.shape, 3), grid.ijk_to_ras
