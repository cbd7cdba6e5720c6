"""The worksheet's exports: the CSV and the one-page report (table and a thumbnail per lesion per time
point), written as one set, and thumbnails that show the axial plane through the lesion as Slicer's slice
view does, whatever the scan's orientation and voxel size.

Real parts: slicer-core's scene, volume and storage nodes, the phantom scans, PIL decoding the PNGs.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from worksheet_helpers import baseline_line, motion_field, phantom_session


def _worksheet(slicer):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer)
    first = baseline_line(slicer, pair)
    ws.add_lesion(session, first, organ="lung")
    ws.add_lesion(session, baseline_line(slicer, pair, 2, "L3 diameter"))
    field = motion_field(pair)
    ws.propose_all(session, lambda fixed, moving: field)
    for line in ws.lesions(session):
        ws.accept_line(ws.follow_up_line(line, 1))  # month 6 stays a proposal: not counted
    return session, first


def test_export_writes_the_table_and_a_thumbnail_per_lesion_per_time_point(slicer_app, tmp_path):
    from PIL import Image

    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.worksheet_report import export_worksheet

    session, first = _worksheet(slicer_app)
    csv_path, html_path = tmp_path / "ws.csv", tmp_path / "ws.html"
    assert export_worksheet(session, csv_path, html_path) == [csv_path, html_path]
    rows = csv_path.read_text().splitlines()
    base, month3 = ws.line_length(first), ws.accepted_length(first, 1)
    assert rows[0] == "lesion,kind,organ,location,lymph_node,baseline,month 3,month 6"
    assert rows[1] == f'L1,target,lung,"RAS 79.3, 9.8, 9.2",no,{base:.1f},{month3:.1f},'
    assert rows[2].startswith('L3,target,,"RAS 73.1, -5.1, 2.5",no,')
    assert rows[4].startswith("timepoint,sum_mm,change_from_baseline")
    assert rows[7].startswith("month 6,,,")  # the proposals of month 6 are not counted: no sum there
    assert rows[7].endswith(',NE,,no,NE,"target response not evaluable: L1, L3 not measured at this time point"')
    html = html_path.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)">', html)
    assert sorted(alt for _png, alt in images) == [
        f"{lesion} at {tp}" for lesion in ("L1", "L3") for tp in ("baseline", "month 3", "month 6")
    ]
    for png, _alt in images:
        assert Image.open(io.BytesIO(base64.b64decode(png))).size == (128, 128)
    assert f"<td>{base:.1f}" in html and f"<td>{month3:.1f}" in html and "<td>SD</td>" in html
    assert "Lesion follow-up (RECIST 1.1): MedDIFT tracking" in html


def test_export_refuses_an_existing_file_and_writes_nothing(slicer_app, tmp_path):
    from MedDIFTLib.errors import MedDIFTError
    from MedDIFTSceneLib.worksheet_report import export_worksheet

    session, _first = _worksheet(slicer_app)
    csv_path, html_path = tmp_path / "ws.csv", tmp_path / "ws.html"
    csv_path.write_text("the reader's own notes")
    with pytest.raises(MedDIFTError, match="exists"):
        export_worksheet(session, csv_path, html_path)
    assert csv_path.read_text() == "the reader's own notes" and not html_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws.csv"]  # no half set, no staging folder left
    export_worksheet(session, csv_path, html_path, force=True)
    assert csv_path.read_text().startswith("lesion,") and html_path.exists()


def test_export_never_writes_over_a_file_the_session_was_loaded_from(slicer_app, tmp_path):
    from MedDIFTLib.errors import MedDIFTError
    from MedDIFTSceneLib.worksheet_report import export_worksheet

    session, _first = _worksheet(slicer_app)
    volume = session.baseline_volume
    volume.AddDefaultStorageNode()
    storage = volume.GetStorageNode()
    storage.SetFileName(str(tmp_path / "baseline.nrrd"))
    assert storage.WriteData(volume)
    saved = (tmp_path / "baseline.nrrd").read_bytes()
    with pytest.raises(MedDIFTError, match="is the file of 'baseline': an output never replaces an input"):
        export_worksheet(session, tmp_path / "ws.csv", tmp_path / "baseline.nrrd", force=True)
    assert (tmp_path / "baseline.nrrd").read_bytes() == saved and not (tmp_path / "ws.csv").exists()


def test_an_empty_worksheet_is_refused_before_anything_is_written(slicer_app, tmp_path):
    from MedDIFTLib.errors import InputError
    from MedDIFTSceneLib.worksheet_report import export_worksheet

    session, _pair, _lm = phantom_session(slicer_app)
    with pytest.raises(InputError, match="the worksheet has no lesions: measure one on the baseline"):
        export_worksheet(session, tmp_path / "ws.csv", tmp_path / "ws.html")
    assert list(tmp_path.iterdir()) == []


def test_thumbnail_is_the_axial_plane_of_an_oblique_anisotropic_scan(slicer_app):
    """Voxel values that are a linear function of RAS: the slice must show that function of each pixel's
    RAS centre (row 0 anterior, column 0 patient right), whatever the voxel grid."""
    from scipy.spatial.transform import Rotation

    from MedDIFTLib.data.geometry import Volume
    from MedDIFTSceneLib.scene import add_volume_node
    from MedDIFTSceneLib.worksheet_report import axial_slice

    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = Rotation.from_euler("xyz", [20, -15, 30], degrees=True).as_matrix() @ np.diag([1.5, 0.8, 3])
    ijk_to_ras[:3, 3] = [-40.0, -30.0, -60.0]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (70, 90, 40)], indexing="ij"), axis=-1)
    ras = ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
    value = ras @ np.array([1.0, 2.0, 3.0])
    node = add_volume_node(slicer_app.mrmlScene, Volume(value.astype(np.float32), ijk_to_ras, "oblique"), "oblique")
    centre = ijk_to_ras[:3, :3] @ np.array([35.0, 45.0, 20.0]) + ijk_to_ras[:3, 3]
    image, step = axial_slice(node, centre, fov_mm=20.0, size=16)
    offsets = (np.arange(16) - 7.5) * step
    expected = (centre[0] - offsets[None, :]) + 2.0 * (centre[1] - offsets[:, None]) + 3.0 * centre[2]
    # trilinear interpolation of a linear function is exact; float32 voxels round at about 1e-5 of 300
    np.testing.assert_allclose(image, expected, atol=1e-2)


def test_thumbnail_draws_the_line_where_its_end_points_are(slicer_app):
    from PIL import Image

    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.worksheet_report import ACCEPTED_RGB, PROPOSED_RGB, thumbnail_png

    session, first = _worksheet(slicer_app)
    ends = ws.line_points(first)  # 11.9 mm along R: the thumbnail spans 40 mm in 128 pixels
    for accepted, colour in ((True, ACCEPTED_RGB), (False, PROPOSED_RGB)):
        png = thumbnail_png(session.baseline_volume, ends, accepted)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        rows, cols = np.nonzero(np.all(pixels == colour, axis=-1))
        half = 11.925 / 2 / (40.0 / 128)  # pixels from the middle (63.5) to each end
        # a 2-pixel line with 5-pixel end circles: within 3 pixels of where the end points project
        assert rows.min() >= 63.5 - 3 and rows.max() <= 63.5 + 3
        assert abs(cols.min() - (63.5 - half)) <= 3 and abs(cols.max() - (63.5 + half)) <= 3
        assert np.all(np.isin(np.arange(int(63.5 - half) + 1, int(63.5 + half)), cols))  # unbroken
