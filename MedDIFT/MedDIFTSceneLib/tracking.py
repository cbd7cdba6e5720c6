"""Landmark/lesion pairs: the fixed point, its match, the scores, and the reader's verdict.

The pairs live in the scene itself (the fixed and matched point lists), so
nothing is lost when the module is reloaded: the verdict of each pair is a
node attribute of the matched list (``MedDIFT.status.<label>``), a hand
correction is simply the moved, unlocked matched point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import InputError

from .scene import pointset_from_markups

if TYPE_CHECKING:
    from pathlib import Path

STATUS_PREFIX = "MedDIFT.status."
STATUSES = ("proposed", "accepted", "corrected")
SOURCE_PREFIX = "MedDIFT.source."  # where a proposed match came from (provisional, the dense field)


@dataclass
class Pair:
    label: str
    fixed: np.ndarray  # RAS mm
    moving: np.ndarray  # RAS mm (as it is in the scene now: a correction is kept)
    similarity: float
    confidence: float
    fb_error_mm: float
    status: str


def pairs_from_nodes(fixed_node, matched_node) -> list[Pair]:
    """One pair per fixed label that has a match, in the fixed list's order."""
    fixed = pointset_from_markups(fixed_node)
    matched = pointset_from_markups(matched_node)
    assert fixed.labels is not None and matched.labels is not None  # PointSet makes lists
    by_label = {lb: i for i, lb in enumerate(matched.labels)}
    pairs = []
    for i, label in enumerate(fixed.labels):
        j = by_label.get(label)
        if j is None:
            continue
        score = {
            k: matched.values[k][j] if k in matched.values else np.nan
            for k in ("similarity", "confidence", "fb_error_mm")
        }
        pairs.append(
            Pair(
                label,
                fixed.points[i],
                matched.points[j],
                score["similarity"],
                score["confidence"],
                score["fb_error_mm"],
                shown_status(matched_node, label),
            )
        )
    return pairs


def _index(node, label: str) -> int:
    for i in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointLabel(i) == label:
            return i
    raise InputError(f"no point labelled {label!r} in {node.GetName()!r}")


def accept(matched_node, label: str) -> None:
    """The reader checked the match: keep it, locked."""
    matched_node.SetNthControlPointLocked(_index(matched_node, label), True)
    matched_node.SetAttribute(STATUS_PREFIX + label, "accepted")


def clear_verdicts(matched_node, labels: list | None = None) -> None:
    """Forget the verdicts of ``labels`` (default: all): their matches were just placed anew, and a
    verdict belongs to the position the reader saw (and so does where it came from)."""
    for name in list(matched_node.GetAttributeNames() or ()):
        for prefix in (STATUS_PREFIX, SOURCE_PREFIX):
            if name.startswith(prefix) and (labels is None or name[len(prefix) :] in labels):
                matched_node.RemoveAttribute(name)


def verdict(matched_node, label: str) -> str:
    """The reader's verdict on the match of ``label``: proposed, accepted or corrected."""
    return matched_node.GetAttribute(STATUS_PREFIX + label) or "proposed"


def shown_status(matched_node, label: str) -> str:
    """What the table's status column says: the reader's verdict, or for a match the reader has not
    checked, where it came from when that is known (provisional point match, the dense field)."""
    said = verdict(matched_node, label)
    return (matched_node.GetAttribute(SOURCE_PREFIX + label) or said) if said == "proposed" else said


def start_correction(matched_node, label: str) -> None:
    """Unlock the match so the reader can drag it; its moved position is what is kept and exported."""
    matched_node.SetNthControlPointLocked(_index(matched_node, label), False)
    matched_node.SetAttribute(STATUS_PREFIX + label, "corrected")


def pairs_pointsets(pairs: list[Pair]) -> tuple[PointSet, PointSet]:
    """The pairs as two point sets (fixed, moving) with the scores and verdicts."""
    labels = [p.label for p in pairs]
    values = {
        "similarity": np.array([p.similarity for p in pairs]),
        "confidence": np.array([p.confidence for p in pairs]),
        "fb_error_mm": np.array([p.fb_error_mm for p in pairs]),
    }
    desc = [p.status for p in pairs]
    fixed = PointSet(np.array([p.fixed for p in pairs]).reshape(-1, 3), labels, descriptions=desc, name="fixed")
    moving = PointSet(
        np.array([p.moving for p in pairs]).reshape(-1, 3), labels, values, descriptions=desc, name="moving"
    )
    return fixed, moving


def export_pairs(pairs: list[Pair], path, moving_path: str | Path | None = None) -> list:
    """CSV: one row per pair (label, fixed x/y/z, moving x/y/z, scores, status).
    ``.mrk.json``: two files, ``path`` (fixed) and ``moving_path`` (default ``<stem>_moving.mrk.json``)."""
    from pathlib import Path

    path = Path(path)
    if not pairs:
        raise InputError("no landmark pairs to export: run a match first")
    if path.name.lower().endswith(".csv"):
        _write_pairs_csv(pairs, path)
        return [path]
    if path.name.lower().endswith(".mrk.json"):
        fixed, moving = pairs_pointsets(pairs)
        moving_path = (
            Path(moving_path) if moving_path else path.with_name(path.name[: -len(".mrk.json")] + "_moving.mrk.json")
        )
        write_points(fixed, path)
        write_points(moving, moving_path)
        return [path, moving_path]
    raise InputError(f"{path}: export pairs as .csv or .mrk.json")


def _write_pairs_csv(pairs: list[Pair], path) -> None:
    import csv
    import io

    from MedDIFTLib.atomic import write_text_atomic

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "label",
            "fixed_x",
            "fixed_y",
            "fixed_z",
            "moving_x",
            "moving_y",
            "moving_z",
            "similarity",
            "confidence",
            "fb_error_mm",
            "status",
        ]
    )
    for p in pairs:
        w.writerow(
            [
                p.label,
                *[f"{c:.4f}" for c in p.fixed],
                *[f"{c:.4f}" for c in p.moving],
                f"{p.similarity:.5f}",
                f"{p.confidence:.5f}",
                f"{p.fb_error_mm:.4f}",
                p.status,
            ]
        )
    write_text_atomic(path, buf.getvalue())
