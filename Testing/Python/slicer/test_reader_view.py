"""What the reader sees, driven through the module's own panel over real MRML.

The widget is built from the real ``.ui`` by Slicer's ``loadUI``; Apply runs the real worker
(weight-free MIND-SSC backbone on the CPU, dense registration included) and the results land in a
real MRML scene, whose own layout logic (slicer-core) arranges the slice views. Stand-ins: the Qt
widgets and event loop (Testing/SlicerStandIn/README.md). The worker runs twice in this file (2 CPUs).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import slicer_standin

REPO = Path(__file__).resolve().parents[3]
UI_FILE = REPO / "MedDIFT" / "Resources" / "UI" / "MedDIFT.ui"
NOT_CONTROLS = {"QLabel", "qMRMLWidget"}  # text and the panel itself; everything else is a control


def _phantom_scene(slicer, n=4):
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=(48, 48, 48), spacing=(4.0, 4.0, 4.0), seed=7)
    fixed = add_volume_node(slicer.mrmlScene, pair.fixed, "fixed")
    moving = add_volume_node(slicer.mrmlScene, pair.moving, "moving")
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    points.CreateDefaultDisplayNodes()  # as a list placed in Slicer has
    write_markups(points, sample_landmarks(pair, n=n, seed=7), locked=False)
    return pair, fixed, moving, points


def _configure(w, fixed, moving, points):
    ui = w.ui
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    ui.fixedLandmarksSelector.setCurrentNode(points)
    ui.backboneComboBox.setCurrentText("mind-ssc")
    ui.deviceComboBox.setCurrentText("cpu")
    ui.searchRadiusSpinBox.value = 20.0


def _apply_and_wait(w, timeout=600):
    w.ui.applyButton.click()
    assert slicer_standin.runEventLoop(lambda: w.job is None, timeout=timeout), "the job did not finish"
    assert "Failed" not in w.ui.logTextEdit.toPlainText(), w.ui.logTextEdit.toPlainText()


# --- the .ui ------------------------------------------------------------------------------


def test_every_control_has_a_tooltip():
    root = ET.parse(UI_FILE).getroot()
    missing = [
        w.get("name")
        for w in root.iter("widget")
        if w.get("class") not in NOT_CONTROLS and not (w.findtext("property[@name='toolTip']/string") or "").strip()
    ]
    assert missing == []


def test_options_sit_above_apply():
    """Every widget bound to an option, and Live, comes before Apply in the panel's order."""
    root = ET.parse(UI_FILE).getroot()
    order = [w.get("name") for w in root.iter("widget")]
    bound = [w.get("name") for w in root.iter("widget") if w.find("property[@name='SlicerParameterName']") is not None]
    apply_at = order.index("applyButton")
    late = [name for name in bound + ["liveModeCheckBox", "resetDefaultsButton"] if order.index(name) > apply_at]
    assert late == [] and {"denseMatchingCheckBox", "outputTransformCheckBox", "warpMovingCheckBox"} <= set(bound)


# --- the field file -------------------------------------------------------------------------


def test_field_file_carries_nifti_displacement_intent_and_reads_back_exactly(tmp_path):
    """Slicer reads a NIfTI displacement field by its intent code 1006 (NIFTI_INTENT_DISPVECT, vectors
    in RAS); SimpleITK's default, 1007 (plain vector), makes it warn. Read back through ITK the field is
    the one written (to float64 rounding: the file holds doubles)."""
    import SimpleITK as sitk

    from MedDIFTLib.data.geometry import Grid
    from MedDIFTLib.registration.field import write_field
    from MedDIFTSceneLib.jobsteps import read_field

    m = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0], [0.0, 0.0, 0.0, 1.0]])
    disp = np.random.default_rng(0).normal(size=(4, 5, 6, 3))
    for name in ("field.nii.gz", "field.nii"):
        path = write_field(disp, Grid((4, 5, 6), m), tmp_path / name)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        assert reader.GetMetaData("intent_code") == "1006", name
        back, ijk_to_ras = read_field(path)
        np.testing.assert_allclose(back, disp, atol=1e-12)
        np.testing.assert_allclose(ijk_to_ras, m, atol=1e-9)  # the header stores float32 geometry


# --- a dense run, as the reader sees it -------------------------------------------------------


def test_a_dense_run_shows_progress_views_and_its_outputs(module_widget, no_weights):
    import slicer

    w = module_widget
    ui, p = w.ui, w._parameterNode
    pair, fixed, moving, points = _phantom_scene(slicer)
    _configure(w, fixed, moving, points)
    lm = slicer.app.layoutManager()
    assert lm.sliceWidget("Yellow").mrmlSliceNode().GetOrientation() == "Sagittal"  # Slicer's default scene
    ui.denseMatchingCheckBox.checked = True
    ui.outputTransformCheckBox.checked = True
    ui.inverseTransformCheckBox.checked = True
    ui.warpMovingCheckBox.checked = True
    seen = []  # (stage, bar value, status line) at each change of the bar
    ui.progressBar.connect("valueChanged(int)", lambda v: seen.append((w.job.stage, v, ui.statusLabel.text)))
    _apply_and_wait(w)

    # progress: the bar moves through the dense registration's own stages, never backwards
    in_register = sorted({v for stage, v, _ in seen if stage.startswith("register")})
    assert len(in_register) >= 4, "\n".join(map(str, seen))
    values = [v for _, v, _ in seen]
    assert values == sorted(values) and values[-1] == 100
    assert any("elapsed" in s for _, _, s in seen) and any(" left)" in s for _, _, s in seen), seen

    # side by side: the same orientation in both views (MRML's own layout logic made them)
    red, yellow = (lm.sliceWidget(n).mrmlSliceNode() for n in ("Red", "Yellow"))
    assert lm.layoutLogic().GetLayoutNode().GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert yellow.GetOrientation() == red.GetOrientation() == "Axial"
    # fixed points not in the moving view, matched points only there (and 3D), in another colour
    matched = p.outputLandmarks
    fixed_views = [
        points.GetDisplayNode().GetNthViewNodeID(i) for i in range(points.GetDisplayNode().GetNumberOfViewNodeIDs())
    ]
    matched_views = [
        matched.GetDisplayNode().GetNthViewNodeID(i) for i in range(matched.GetDisplayNode().GetNumberOfViewNodeIDs())
    ]
    assert yellow.GetID() not in fixed_views and red.GetID() in fixed_views
    assert yellow.GetID() in matched_views and red.GetID() not in matched_views
    assert (
        np.abs(
            np.subtract(points.GetDisplayNode().GetSelectedColor(), matched.GetDisplayNode().GetSelectedColor())
        ).max()
        > 0.3
    )

    # outputs: shown in their selectors; the inverse carries fixed points where the forward map sends them
    transform, warped = p.outputTransformNode, p.warpedVolume
    assert transform is not None and transform.GetName() == "MedDIFT moving to fixed"
    assert warped is not None and warped.GetName() == "moving registered"
    inverse = slicer.mrmlScene.GetFirstNodeByName("MedDIFT fixed to moving")
    assert inverse is not None
    probe = [float(c) for c in np.asarray(fixed.GetOrigin()) + np.array([-60.0, -70.0, 90.0])]
    forward = transform.GetTransformFromParent().TransformPoint(probe)
    carried = inverse.GetTransformToParent().TransformPoint(probe)
    np.testing.assert_allclose(carried, forward, atol=1e-9)  # the same grid, the same trilinear sample
    assert np.linalg.norm(np.subtract(forward, probe)) > 0.1  # the map moves points: the check is not vacuous

    # a second run writes into the selected outputs; "Create new" gives new nodes with unique names
    transforms_before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode")
    ui.inverseTransformCheckBox.checked = False
    p.outputLandmarks = None  # a new list (the overwrite question is not what this test is about)
    _apply_and_wait(w)
    assert p.outputTransformNode is transform and p.warpedVolume is warped
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode") == transforms_before
    p.outputTransformNode, p.warpedVolume, p.outputLandmarks = None, None, None
    ui.denseMatchingCheckBox.checked = False
    _apply_and_wait(w)
    assert p.outputTransformNode is not transform and p.outputTransformNode.GetName() == "MedDIFT moving to fixed_1"
    assert p.warpedVolume.GetName() == "moving registered_1" and p.outputLandmarks.GetName() == "MedDIFT matched_2"


def test_a_transform_the_user_made_is_never_overwritten():
    slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML library) is not installed")
    from MedDIFTSceneLib.transforms import reusable, transform_outputs

    scene = slicer.vtkMRMLScene()
    users = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "my registration")
    grid = np.eye(4)
    users.SetAndObserveTransformFromParent(_grid_transform(np.full((3, 3, 3, 3), 5.0), grid))
    assert not reusable(users) and reusable(scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "empty"))
    out = transform_outputs(scene, users, np.ones((3, 3, 3, 3)), grid, "moving")
    assert out["transform_node"] is not users
    assert users.GetTransformFromParent().TransformPoint([1.0, 1.0, 1.0]) == pytest.approx((6.0, 6.0, 6.0))


def _grid_transform(disp, ijk_to_ras):
    from MedDIFTSceneLib.transforms import oriented_grid_transform

    return oriented_grid_transform(disp, ijk_to_ras)


# --- options and the feature cache -------------------------------------------------------------


def test_reset_puts_every_option_back_and_keeps_the_selection(module_widget):
    import slicer

    w = module_widget
    ui, p = w.ui, w._parameterNode
    _, fixed, moving, points = _phantom_scene(slicer)
    _configure(w, fixed, moving, points)
    ui.timestepSpinBox.value = 250
    ui.levelsLineEdit.text = "up1"
    ui.denseMatchingCheckBox.checked = True
    ui.warpMovingCheckBox.checked = True
    ui.resetDefaultsButton.click()
    assert (p.backbone, p.device, p.timestep, p.levels, p.searchRadius) == ("auto", "auto", 20, "", 0.0)
    assert not (p.denseMatching or p.warpMoving or p.outputTransform or p.inverseTransform)
    assert (ui.backboneComboBox.currentText, ui.timestepSpinBox.value, ui.warpMovingCheckBox.checked) == (
        "auto",
        20,
        False,
    )
    assert (p.fixedVolume, p.movingVolume, p.fixedLandmarks) == (fixed, moving, points)


def test_feature_cache_folder_and_size_are_shown_and_clearing_keeps_other_files(module_widget, no_weights):
    import os

    w = module_widget
    folder = Path(os.environ["MEDDIFT_CACHE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    ours = [folder / f"{'ab' * 16}.pt", folder / f".{'cd' * 16}.pt.tmp123"]
    for i, path in enumerate(ours):
        path.write_bytes(b"x" * (1500 + i * 500))
    theirs = folder / "notes.pt"  # not a name MedDIFT writes: never deleted
    theirs.write_bytes(b"keep")
    w.ui.advancedCollapsibleButton.collapsed = False  # opening the section refreshes the figures
    assert w.ui.cacheInfoLabel.text == f"{folder}: 2 files, 3.5 KB" and w.ui.clearCacheButton.enabled
    import qt

    import slicer

    slicer.app.setTestingEnabled(False)  # the confirmation as a user sees it (testing mode answers for them)
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Cancel)
    w.ui.clearCacheButton.click()
    assert all(p.exists() for p in ours)  # "Cancel" deletes nothing
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Ok)
    w.ui.clearCacheButton.click()
    assert not any(p.exists() for p in ours) and theirs.read_bytes() == b"keep"
    assert w.ui.cacheInfoLabel.text == f"{folder}: 0 files, 0 bytes" and not w.ui.clearCacheButton.enabled
    assert "3.5 KB freed" in w.ui.logTextEdit.toPlainText()
