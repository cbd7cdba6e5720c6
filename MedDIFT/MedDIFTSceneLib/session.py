"""A tracking session kept in the scene: a baseline scan, its landmarks, follow-up scans, a matched
point list per follow-up, each match's scores and the reader's verdict.

Everything lives in MRML so that saving the scene (``.mrml`` with its files, or ``.mrb``) and loading
it back restores the table exactly, with nothing stored by the module itself:

- a ``vtkMRMLScriptedModuleNode`` (attribute ``MedDIFT.TrackingSession``) with node references
  ``baselineVolume``, ``baselineLandmarks``, ``followUpVolume`` (ordered, one per time point) and
  ``matchedLandmarks`` (same order), and the parameter ``mode``: each follow-up is matched from the
  previous time point's matches (``previous``: follows slow change) or from the baseline
  (``baseline``: errors do not accumulate). References survive saving and loading, IDs remapped;
- each matched list holds the positions (a hand correction is the moved point), the scores in the
  point descriptions (one codec) and the verdicts as attributes (:mod:`.tracking`).
"""

from __future__ import annotations

import numpy as np

from MedDIFTLib.errors import InputError

from .scene import pointset_from_markups
from .tracking import shown_status

SESSION_ATTRIBUTE = "MedDIFT.TrackingSession"
MODES = ("previous", "baseline")


class TrackingSession:
    """A view of one session node; every value is read from the scene when asked."""

    def __init__(self, node):
        self.node = node

    @classmethod
    def create(
        cls, scene, baseline_volume, baseline_points, follow_ups, mode: str = "previous", name: str = "MedDIFT tracking"
    ) -> TrackingSession:
        if mode not in MODES:
            raise InputError(f"tracking mode {mode!r}: choose one of {', '.join(MODES)}")
        if not follow_ups:
            raise InputError("choose at least one follow-up volume")
        ids = [baseline_volume.GetID()] + [v.GetID() for v in follow_ups]
        if len(set(ids)) != len(ids):
            raise InputError("the baseline and the follow-ups must be different volumes")
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # CreateNodeByClass hands over a reference; the scene keeps its own
        node.SetName(scene.GenerateUniqueName(name))
        node.SetAttribute(SESSION_ATTRIBUTE, "1")  # before it is added: observers of NodeAdded see a session
        node.SetHideFromEditors(False)
        node.SetParameter("mode", mode)
        node.SetNodeReferenceID("baselineVolume", baseline_volume.GetID())
        node.SetNodeReferenceID("baselineLandmarks", baseline_points.GetID())
        for v in follow_ups:
            node.AddNodeReferenceID("followUpVolume", v.GetID())
        return cls(scene.AddNode(node))

    @classmethod
    def all_in(cls, scene) -> list[TrackingSession]:
        nodes = (
            scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode"))
        )
        return [cls(n) for n in nodes if n.GetAttribute(SESSION_ATTRIBUTE) == "1"]

    @classmethod
    def find_pair(cls, scene, fixed_volume, moving_volume, fixed_points) -> TrackingSession | None:
        """The two-scan session of an earlier Apply on the same three nodes, if any (reused)."""
        for s in cls.all_in(scene):
            if (
                s.baseline_volume is fixed_volume
                and s.baseline_points is fixed_points
                and s.follow_ups == [moving_volume]
            ):
                return s
        return None

    @property
    def name(self) -> str:
        return self.node.GetName()

    # --- what it holds ---------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.node.GetParameter("mode") or "previous"

    @property
    def baseline_volume(self):
        return self.node.GetNodeReference("baselineVolume")

    @property
    def baseline_points(self):
        return self.node.GetNodeReference("baselineLandmarks")

    @property
    def follow_ups(self) -> list:
        return [
            self.node.GetNthNodeReference("followUpVolume", i)
            for i in range(self.node.GetNumberOfNodeReferences("followUpVolume"))
        ]

    def volumes(self) -> list:
        """Baseline first, then the follow-ups: time point ``t`` is ``volumes()[t]``."""
        return [self.baseline_volume] + self.follow_ups

    def matched(self, t: int):
        """The matched point list of follow-up ``t`` (1-based), None before it was run."""
        if not 1 <= t <= len(self.follow_ups):
            raise InputError(f"time point {t}: the session has follow-ups 1..{len(self.follow_ups)}")
        if t > self.node.GetNumberOfNodeReferences("matchedLandmarks"):
            return None
        node = self.node.GetNthNodeReference("matchedLandmarks", t - 1)
        return node if node is not None and node.IsA("vtkMRMLMarkupsFiducialNode") else None

    def set_matched(self, t: int, points_node) -> None:
        while self.node.GetNumberOfNodeReferences("matchedLandmarks") < t - 1:  # placeholders keep the order
            self.node.AddNodeReferenceID("matchedLandmarks", self.baseline_points.GetID())
        self.node.SetNthNodeReferenceID("matchedLandmarks", t - 1, points_node.GetID())

    def source(self, t: int):
        """(fixed volume, fixed points) that follow-up ``t`` is matched from."""
        if self.mode == "baseline" or t == 1:
            return self.baseline_volume, self.baseline_points
        previous = self.matched(t - 1)
        if previous is None:
            raise InputError(f"follow-up {t} is matched from follow-up {t - 1}, which has no matches yet")
        return self.follow_ups[t - 2], previous

    # --- the table ----------------------------------------------------------------------

    def header(self) -> list[str]:
        cols = ["Label"]
        for v in self.follow_ups:
            name = v.GetName() if v is not None else "?"
            cols += [f"{name}: match (RAS)", f"{name}: confidence", f"{name}: status"]
        return cols

    def rows(self) -> list[dict]:
        """One row per baseline landmark: ``label`` and, per follow-up, ``(point, confidence,
        similarity, status)`` or None where that time point has no match for it (yet)."""
        base = pointset_from_markups(self.baseline_points)
        assert base.labels is not None  # PointSet makes a list
        per_time: list[dict] = []
        for t in range(1, len(self.follow_ups) + 1):
            node = self.matched(t)
            if node is None:
                per_time.append({})
                continue
            ps = pointset_from_markups(node)
            assert ps.labels is not None  # PointSet makes a list
            cells = {}
            for j, label in enumerate(ps.labels):
                conf = ps.values["confidence"][j] if "confidence" in ps.values else np.nan
                sim = ps.values["similarity"][j] if "similarity" in ps.values else np.nan
                status = shown_status(node, label)
                if status == "proposed" and ps.values.get("fb_flag") is not None and ps.values["fb_flag"][j] == 1:
                    status = "check: does not match back"  # the forward-backward check failed
                cells[label] = (ps.points[j], float(conf), float(sim), status)
            per_time.append(cells)
        return [{"label": label, "cells": [cells.get(label) for cells in per_time]} for label in base.labels]

    def table_text(self) -> list[list[str]]:
        """The rows as the table shows them (also what a round trip through a saved scene must keep)."""
        out = []
        for row in self.rows():
            texts = [row["label"]]
            for cell in row["cells"]:
                if cell is None:
                    texts += ["", "", ""]
                    continue
                point, conf, _sim, status = cell
                texts += [
                    ", ".join(f"{c:.1f}" for c in point) if np.all(np.isfinite(point)) else "(none)",
                    "" if np.isnan(conf) else f"{conf:.2f}",
                    status,
                ]
            out.append(texts)
        return out


def session_of(scene, matched_node) -> tuple[TrackingSession, int] | None:
    """The session and time point a matched list belongs to, if any."""
    for s in TrackingSession.all_in(scene):
        for t in range(1, len(s.follow_ups) + 1):
            if s.matched(t) is matched_node:
                return s, t
    return None
