"""Draw ``docs/images/worksheet.png``: the lesion worksheet's HTML report for a phantom follow-up, laid out
as one picture (its thumbnails and its tables), for the README.

What runs is the module's own worksheet code (``MedDIFTSceneLib.worksheet`` and ``worksheet_report``) on a
real MRML scene (slicer-core, through ``Testing/SlicerStandIn``): a phantom baseline and two follow-ups in
which the phantom's lesions shrink (to 85% and 60% of their radius) while the chest breathes. The matches
and the dense field are the phantom's known motion (tracking that is exactly right), the lines on the
follow-ups are the worksheet's proposals, shortened by this script to the lesions' new edges as a reader
would adjust them, then accepted. The picture is the export's content drawn with matplotlib, not a
screenshot of Slicer or of a browser. Run from the repository root:
``PYTHONPATH=.:Testing/SlicerStandIn:MedDIFT python docs/images/render_worksheet.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path

import matplotlib
import numpy as np
import slicer_standin

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from MedDIFTLib.data.geometry import Volume  # noqa: E402
from MedDIFTLib.data.points import PointSet  # noqa: E402
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks  # noqa: E402
from MedDIFTLib.followup.worksheet_io import lesion_rows, table_rows  # noqa: E402

OUT = Path(__file__).resolve().parent / "worksheet.png"
SHRINK = {1: 0.85, 2: 0.6}  # each follow-up's lesion radius, as a fraction of the baseline's


def shrunk_scan(pair, scale: float, name: str) -> Volume:
    anatomy = dataclasses.replace(pair.anatomy, lesion_radii=pair.anatomy.lesion_radii * scale)
    grid = pair.moving.grid
    hu, _lungs = anatomy.render(pair.motion.moving_to_fixed(grid.voxel_centres()))
    return Volume(hu.reshape(grid.shape).astype(np.float32), grid.ijk_to_ras.copy(), name)


def build(slicer):
    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.scene import add_volume_node, write_markups
    from MedDIFTSceneLib.session import TrackingSession

    scene = slicer.mrmlScene
    pair = make_pair(shape=(120, 120, 120), spacing=(2.5, 2.5, 2.5), seed=2, noise_hu=10.0)
    base = add_volume_node(scene, pair.fixed, "baseline")
    ups = [add_volume_node(scene, shrunk_scan(pair, SHRINK[t], n), n) for t, n in ((1, "month 3"), (2, "month 6"))]
    for node in (base, *ups):
        node.GetDisplayNode().SetAutoWindowLevel(False)
        node.GetDisplayNode().SetWindowLevel(1500.0, -600.0)  # the lung window a reader would choose
    lm = sample_landmarks(pair, n=3, seed=2)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    write_markups(points, lm, locked=False)
    session = TrackingSession.create(scene, base, points, ups, mode="baseline", name="Patient 7 follow-up")
    for t in (1, 2):
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"matched {t}")
        write_markups(node, PointSet(pair.true_moving_points(lm.points), lm.labels), locked=True)
        session.set_matched(t, node)
    for i, organ in ((0, "right lung"), (2, "right lung, posterior")):
        centre, radius = pair.anatomy.lesions[i], pair.anatomy.lesion_radii[i]
        line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"lesion {i + 1} diameter")
        for sign in (-1.0, 1.0):
            line.AddControlPointWorld(*(centre + sign * np.array([radius, 0.0, 0.0])))
        ws.add_lesion(session, line, organ=organ)
    grid = pair.fixed.grid
    centres = grid.voxel_centres()
    field = ((pair.true_moving_points(centres) - centres).reshape(*grid.shape, 3), grid.ijk_to_ras)
    ws.propose_all(session, lambda fixed, moving: field)
    for line in ws.lesions(session):
        for t in (1, 2):
            follow = ws.follow_up_line(line, t)
            a, b = ws.line_points(follow)
            mid, half = (a + b) / 2, (b - a) / 2 * SHRINK[t]  # the reader drags the ends to the new edges
            follow.SetNthControlPointPositionWorld(0, *(mid - half))
            follow.SetNthControlPointPositionWorld(1, *(mid + half))
            ws.accept_line(follow)
    return session


def draw(session, html: str) -> None:
    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.worksheet_report import thumbnails

    sheet = ws.build_worksheet(session)
    thumbs, lesions, names = thumbnails(session), lesion_rows(sheet), [tp.name for tp in sheet.timepoints]
    n = len(lesions) - 1
    top, row_h, table_h = 0.45, 1.95, 0.9  # inches
    height = top + n * row_h + table_h + 0.25 * len(sheet.warnings) + 0.3
    fig = plt.figure(figsize=(8.6, height), dpi=110)
    fig.text(0.02, 1 - 0.3 / height, f"Lesion follow-up (RECIST 1.1): {session.name}", fontsize=12, weight="bold")
    for r, row in enumerate(lesions[1:]):
        y = 1 - (top + (r + 1) * row_h) / height
        fig.text(0.02, y + 0.45 * row_h / height, f"{row[0]} ({row[1]})\n{row[2]}\n{row[3]}", fontsize=8.5, va="center")
        for c, name in enumerate(names):
            uri = thumbs[(row[0], name)]
            png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
            ax = fig.add_axes((0.3 + 0.235 * c, y + 0.05 / height, 0.2, (row_h - 0.35) / height))
            ax.imshow(png)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{name}: {row[5 + c]} mm", fontsize=8.5)
    rows = [[c for i, c in enumerate(r) if i in (0, 1, 2, 4, 5, 8)] for r in table_rows(sheet)]
    ax = fig.add_axes((0.02, (0.2 + 0.25 * len(sheet.warnings)) / height, 0.96, table_h / height))
    ax.axis("off")
    table = ax.table(cellText=rows[1:], colLabels=rows[0], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    for k, text in enumerate(sheet.warnings):
        fig.text(0.02, (0.1 + 0.25 * k) / height, "warning: " + text, fontsize=8)
    fig.savefig(OUT)
    assert html.count("<img") == n * len(names)  # the report drawn here has exactly these thumbnails


def main() -> None:
    slicer_standin.installClasses()
    slicer = slicer_standin.start(testing=True)
    from MedDIFTLib.followup.worksheet_io import worksheet_html
    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.worksheet_report import thumbnails

    session = build(slicer)
    draw(session, worksheet_html(ws.build_worksheet(session), session.name, thumbnails(session)))
    print(OUT)


if __name__ == "__main__":
    main()
