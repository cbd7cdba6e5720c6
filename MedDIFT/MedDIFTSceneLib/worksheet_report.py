"""The worksheet's exports: the CSV (:mod:`MedDIFTLib.followup.worksheet_io`) and a one-page HTML report with
a thumbnail of each lesion at each time point.

A thumbnail is what Slicer's axial (red) slice view shows through the lesion: the plane of constant S
through the line's middle, resampled from the volume's voxels by mapping each RAS pixel centre through the
inverse of the volume's IJK-to-RAS matrix (so an oblique or anisotropic scan shows the same anatomy as the
slice view, not a voxel plane), in radiological orientation (patient right on the screen's left, anterior
up), with the line drawn over it. Both files are written as one set (whole or absent), never over an input.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import map_coordinates

from MedDIFTLib.followup.worksheet_io import worksheet_csv, worksheet_html
from MedDIFTLib.outputs import OutputSet

from .scene import volume_from_node
from .session import TrackingSession
from .worksheet import (
    ACCEPTED,
    ACCEPTED_COLOUR,
    PROPOSED_COLOUR,
    build_worksheet,
    follow_up_line,
    label_of,
    lesions,
    line_points,
    status,
    timepoint_names,
)

THUMB_PX = 128
MIN_FOV_MM = 40.0  # a small lesion still shows its surroundings
FOV_PER_LENGTH = 2.5  # the line spans 40% of the thumbnail
ACCEPTED_RGB, PROPOSED_RGB = (tuple(round(255 * c) for c in rgb) for rgb in (ACCEPTED_COLOUR, PROPOSED_COLOUR))


def axial_slice(volume_node, centre, fov_mm: float, size: int = THUMB_PX) -> tuple[np.ndarray, float]:
    """The axial plane through ``centre`` (RAS mm) as the slice view shows it: ``size`` x ``size`` pixels over
    ``fov_mm``, row 0 anterior, column 0 patient right. Returns (image, mm per pixel).

    Args:
        volume_node: a scalar volume node (its IJK-to-RAS and parent transforms are applied).
        centre: the plane's centre, RAS mm.
        fov_mm: the width and height shown.
        size: pixels per side.
    """
    volume = volume_from_node(volume_node)
    step = fov_mm / size
    offsets = (np.arange(size) - (size - 1) / 2.0) * step
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    ras = np.stack([centre[0] - cols, centre[1] - rows, np.full_like(rows, centre[2]), np.ones_like(rows)])
    ijk = np.tensordot(np.linalg.inv(volume.ijk_to_ras), ras, axes=1)[:3]
    outside = float(np.min(volume.array))
    image = map_coordinates(np.asarray(volume.array, dtype=np.float32), ijk, order=1, mode="constant", cval=outside)
    return image, step


def _window(volume_node, image: np.ndarray) -> tuple[float, float]:
    display = volume_node.GetDisplayNode()
    if display is not None and display.IsA("vtkMRMLScalarVolumeDisplayNode") and display.GetWindow() > 1.0:
        return display.GetLevel() - display.GetWindow() / 2.0, display.GetLevel() + display.GetWindow() / 2.0
    lo, hi = np.percentile(image, [1.0, 99.0])
    return float(lo), float(max(hi, lo + 1.0))


def thumbnail_png(volume_node, ends: np.ndarray, accepted: bool, size: int = THUMB_PX) -> bytes:
    """A PNG of the axial slice through the line's middle with the line drawn over it.

    Args:
        volume_node: the time point's volume.
        ends: the line's end points (2, 3), RAS mm.
        accepted: drawn yellow when the reader accepted it, cyan otherwise (as the line is in the views).
        size: pixels per side.
    """
    ends = np.asarray(ends, dtype=np.float64).reshape(2, 3)
    centre = ends.mean(axis=0)
    fov = max(MIN_FOV_MM, FOV_PER_LENGTH * float(np.linalg.norm(ends[1] - ends[0])))
    image, step = axial_slice(volume_node, centre, fov, size)
    lo, hi = _window(volume_node, image)
    grey = (np.clip((image - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)
    picture = Image.fromarray(grey, mode="L").convert("RGB")
    half = (size - 1) / 2.0
    pixels = [(half - (p[0] - centre[0]) / step, half - (p[1] - centre[1]) / step) for p in ends]
    draw = ImageDraw.Draw(picture)
    colour = ACCEPTED_RGB if accepted else PROPOSED_RGB
    draw.line(pixels, fill=colour, width=2)
    for x, y in pixels:
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), outline=colour)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def thumbnails(session: TrackingSession) -> dict:
    """``(lesion label, time point name) -> PNG data URI`` for every line of the worksheet (the baseline
    line, and each follow-up's line, accepted or proposed)."""
    names = timepoint_names(session)
    volumes = session.volumes()
    out = {}
    for lesion_line in lesions(session):
        for t, volume in enumerate(volumes):
            line = lesion_line if t == 0 else follow_up_line(lesion_line, t)
            if line is None or volume is None or line.GetNumberOfDefinedControlPoints() != 2:
                continue
            png = thumbnail_png(volume, line_points(line), accepted=t == 0 or status(line) == ACCEPTED)
            out[(label_of(lesion_line), names[t])] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return out


def _input_files(session: TrackingSession) -> dict:
    """The files the session's nodes were loaded from: never written over."""
    nodes = [*session.volumes(), session.baseline_points, *lesions(session)]
    files = {}
    for node in nodes:
        storage = node.GetStorageNode() if node is not None and hasattr(node, "GetStorageNode") else None
        if storage is not None and storage.GetFileName():
            files[f"the file of {node.GetName()!r}"] = storage.GetFileName()
    return files


def export_worksheet(session: TrackingSession, csv_path, html_path=None, force: bool = False) -> list[Path]:
    """Write the worksheet's CSV and (given a path) its HTML report, as one set: both whole or neither; an
    existing file is replaced only with ``force``; a file the session was loaded from never.

    Args:
        session: the tracking session with its worksheet.
        csv_path: the CSV (lesion table, response table, warnings).
        html_path: the one-page report (printable), or None for the CSV alone.
        force: replace existing files.
    """
    targets = {"csv": Path(csv_path)}
    if html_path:
        targets["html"] = Path(html_path)
    ws = build_worksheet(session)  # refuses an empty worksheet before anything is written
    html = (
        worksheet_html(ws, f"Lesion follow-up (RECIST 1.1): {session.name}", thumbnails(session)) if html_path else ""
    )
    labels = {"csv": "the CSV", "html": "the report"}
    with OutputSet(targets, _input_files(session), force, labels=labels) as out:
        out.path("csv").write_text(worksheet_csv(ws), encoding="utf-8")
        if html_path:
            out.path("html").write_text(html, encoding="utf-8")
        written = out.commit()
    return [Path(written[k]) for k in targets]
