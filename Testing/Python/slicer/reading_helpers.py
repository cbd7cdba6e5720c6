"""Helpers of the reading-session tests: a small phantom scene and the panel driven as a reader would."""

from __future__ import annotations

import numpy as np
import slicer_standin

SHAPE, SPACING = (48, 48, 48), (5.0, 5.0, 5.0)


def scene_with_pair(slicer, n=4, extra_volume=False):
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=SHAPE, spacing=SPACING, seed=5)
    fixed = add_volume_node(slicer.mrmlScene, pair.fixed, "fixed")
    moving = add_volume_node(slicer.mrmlScene, pair.moving, "moving")
    other = add_volume_node(slicer.mrmlScene, pair.moving, "other scan") if extra_volume else None
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    write_markups(points, sample_landmarks(pair, n=n, seed=5), locked=False)
    return pair, fixed, moving, points, other


def configure(w, fixed, moving, points, dense_refine=False):
    """The panel set for the phantom pair; the background dense registration off unless asked for (it is
    the panel's default, but these tests are about what point matching answers)."""
    ui = w.ui
    ui.denseRefineCheckBox.checked = dense_refine
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    ui.fixedLandmarksSelector.setCurrentNode(points)
    ui.backboneComboBox.setCurrentText("mind-ssc")
    ui.deviceComboBox.setCurrentText("cpu")
    ui.searchRadiusSpinBox.value = 20.0


def run_to_end(w, timeout=300):
    assert slicer_standin.runEventLoop(lambda: w.job is None, timeout=timeout), "the job did not finish"


def wait_live(w, timeout=60):
    assert slicer_standin.runEventLoop(
        lambda: not w.logic.core.live.busy() and not w.liveTimer.active, timeout=timeout
    ), "the live match did not come back"


def positions(node):
    return np.array([node.GetNthControlPointPositionWorld(i) for i in range(node.GetNumberOfControlPoints())])


def node_ids(slicer):
    scene = slicer.mrmlScene
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))
