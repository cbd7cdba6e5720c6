"""The dense field behind every click: a pair's registration run in the background, in its own worker.

Point matching answers a click at once but can land on the wrong lesion; the dense registration is
more accurate but takes a while. So both run: Apply and live clicks are answered by point matching
and those matches are marked *provisional*, while a :class:`BackgroundRegistration` registers the
pair in a second worker process (the main worker stays free for clicks; the engine's feature cache
on disk makes the second extraction cheap). When its field arrives, :func:`upgrade_provisional`
re-places every provisional match the reader has not accepted or corrected at the fixed point plus
the displacement there (:func:`field_lookup`), and from then on a click is that lookup, done in this
process. A field belongs to the pair of nodes (and their voxels) it was computed for, never another.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.data.points import describe, parse_description

from .jobsteps import LaunchStep, LocalStep, Step, WorkerStep, read_field, substage_fraction
from .scene import pointset_from_markups, set_partner, volume_from_node
from .tracking import SOURCE_PREFIX, verdict

PROVISIONAL = "provisional (point match)"
FROM_FIELD = "from the dense field"


def field_lookup(points: np.ndarray, displacement: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    """Where ``points`` go through a displacement field: each point plus the field trilinearly
    interpolated at it (RAS mm); NaN for a point outside the field's grid (nothing is known there).

    Args:
        points: (N, 3) RAS mm positions on the fixed scan.
        displacement: (I, J, K, 3) RAS mm displacements on the field's grid (as :func:`~.jobsteps.read_field`).
        ijk_to_ras: the field grid's 4x4 IJK-to-RAS matrix.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    shape = np.array(displacement.shape[:3])
    ijk = (np.linalg.inv(ijk_to_ras) @ np.c_[pts, np.ones(len(pts))].T)[:3].T
    inside = np.all((ijk >= -1e-6) & (ijk <= shape - 1 + 1e-6), axis=1)
    ijk = np.clip(ijk, 0, shape - 1)
    i0 = np.minimum(np.floor(ijk).astype(int), np.maximum(shape - 2, 0))  # the cell's lower corner
    t = ijk - i0
    out = np.zeros((len(pts), 3))
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        idx = np.minimum(i0 + c, shape - 1)
        weight = np.prod(np.where(c == 1, t, 1.0 - t), axis=1)
        out += weight[:, None] * displacement[idx[:, 0], idx[:, 1], idx[:, 2]]
    result = pts + out
    result[~inside] = np.nan
    return result


# --- where a match came from, in the scene (attribute and point description) ----------------------


def set_source(out_node, label: str, source: str | None) -> None:
    """Say where the match of ``label`` came from (``PROVISIONAL``, ``FROM_FIELD``; None: forget): a node
    attribute the table reads, and the free text of the point's description (its scores kept).

    Args:
        out_node: the matched point list.
        label: the landmark's label.
        source: what to say, or None to say nothing.
    """
    if source is None:
        out_node.RemoveAttribute(SOURCE_PREFIX + label)
    else:
        out_node.SetAttribute(SOURCE_PREFIX + label, source)
    for i in range(out_node.GetNumberOfControlPoints()):
        if out_node.GetNthControlPointLabel(i) == label:
            _text, values = parse_description(out_node.GetNthControlPointDescription(i))
            out_node.SetNthControlPointDescription(i, describe(source or "", values))


def source_of(out_node, label: str) -> str | None:
    """Where the match of ``label`` in ``out_node`` came from, if said (:func:`set_source`)."""
    return out_node.GetAttribute(SOURCE_PREFIX + label)


def mark_provisional(out_node, labels: list) -> None:
    """Matches just placed by point matching, to be re-placed when the pair's field arrives.

    Args:
        out_node: the matched point list.
        labels: the labels of the matches just placed.
    """
    for label in labels:
        set_source(out_node, label, PROVISIONAL)


def upgrade_provisional(out_node, fixed_node, field: tuple) -> list:
    """Re-place every provisional match of ``out_node`` that the reader left as proposed (an accepted or
    corrected one is the reader's and stays) at its fixed point moved through ``field``.

    Args:
        out_node: the matched point list.
        fixed_node: the fixed point list its labels come from.
        field: (RAS displacement (I, J, K, 3), IJK-to-RAS) as :func:`~.jobsteps.read_field` gives it.

    Returns:
        The labels re-placed.
    """
    fixed = pointset_from_markups(fixed_node)
    assert fixed.labels is not None  # PointSet makes a list
    todo = [
        i
        for i, label in enumerate(fixed.labels)
        if fixed.defined[i] and source_of(out_node, label) == PROVISIONAL and verdict(out_node, label) == "proposed"
    ]
    if not todo:
        return []
    moved = field_lookup(fixed.points[todo], *field)
    done = []
    for i, point in zip(todo, moved):
        if np.all(np.isfinite(point)):  # outside the field's grid: the provisional match stays, said so
            set_partner(out_node, fixed.labels[i], point, {})  # the old scores were for the old position
            set_source(out_node, fixed.labels[i], FROM_FIELD)
            done.append(fixed.labels[i])
    return done


# --- the registration in its own worker ------------------------------------------------------------


def pair_key(scene, fixed_id: str, moving_id: str, engine: dict) -> tuple:
    """What a field belongs to: both nodes, the version of their voxels, and the engine options.

    Args:
        scene: the MRML scene.
        fixed_id: the fixed volume node's ID.
        moving_id: the moving volume node's ID.
        engine: the engine options the registration runs with.
    """
    stamps = []
    for node_id in (fixed_id, moving_id):
        node = scene.GetNodeByID(node_id)
        image = node.GetImageData() if node is not None else None
        stamps.append(image.GetMTime() if image is not None else None)
    return fixed_id, moving_id, *stamps, repr(sorted(engine.items()))


class BackgroundRegistration:
    """Register one fixed/moving pair in a worker of its own; ``poll()`` until False, then ``field``.

    Args:
        scene: the MRML scene holding both volumes (their voxels are copied now).
        fixed_id: the fixed volume node's ID.
        moving_id: the moving volume node's ID.
        engine: the engine options the worker is configured with (the panel's, as for Apply).
        client: a new, not yet launched worker client (it is this registration's alone).
    """

    error: Exception | None
    upgraded: list  # the labels re-placed from the field, set when it ended (DenseRegistrations.poll)

    def __init__(self, scene, fixed_id: str, moving_id: str, engine: dict, client):
        self.key = pair_key(scene, fixed_id, moving_id, engine)
        self.fixed_id, self.moving_id, self.client = fixed_id, moving_id, client
        self.field: tuple | None = None
        self.done, self.cancelled, self.error = False, False, None
        self.stage, self.fraction = "starting", 0.0
        self.targets: list = []  # (matched list, fixed list) node pairs to upgrade when the field arrives
        self.tmp = Path(tempfile.mkdtemp(prefix="meddift-dense-"))
        fixed, moving = volume_from_node(scene.GetNodeByID(fixed_id)), volume_from_node(scene.GetNodeByID(moving_id))
        paths = {k: self.tmp / f"{k}.nrrd" for k in ("fixed", "moving", "field")}
        self._steps = [
            LaunchStep(),
            WorkerStep("configure", "configure", {"engine": engine, "matching": {}}),
            LocalStep("write fixed", lambda: write_volume(fixed, paths["fixed"])),
            LocalStep("write moving", lambda: write_volume(moving, paths["moving"])),
            WorkerStep("load fixed", "load_volume", {"name": "fixed", "path": str(paths["fixed"])}),
            WorkerStep("load moving", "load_volume", {"name": "moving", "path": str(paths["moving"])}),
            WorkerStep(
                "dense registration", "register", {"fixed": "fixed", "moving": "moving", "out": str(paths["field"])}
            ),
            LocalStep("read field", lambda: read_field(paths["field"]), lambda f: setattr(self, "field", f)),
        ]
        self._total = sum(s.weight for s in self._steps)
        self._done_weight = 0.0
        self._current: Step | None = None

    def poll(self) -> bool:
        """Advance without waiting; True while it runs. Never raises: an error ends it (``error``)."""
        try:
            while not self.done:
                if self._current is None:
                    if not self._steps:
                        self._end("ready")
                        break
                    self._current = self._steps.pop(0)
                    self.stage = self._current.name
                    self._current.start(self.client, self._progress)
                if not self._current.finished():
                    return True
                self._done_weight += self._current.weight
                self.fraction = self._done_weight / self._total
                self._current = None
        except Exception as err:  # noqa: BLE001 - the provisional matches simply stay
            self.error = err
            self._end("failed")
        return False

    def _progress(self, msg: dict) -> None:
        if msg.get("event") == "progress" and self._current is not None:
            part = substage_fraction(self._current.kind, msg["stage"], float(msg["fraction"]))
            self.stage = f"{self._current.name}: {msg['stage']}"
            self.fraction = max(self.fraction, (self._done_weight + self._current.weight * part) / self._total)

    def _end(self, stage: str) -> None:
        self.done, self.stage = True, stage
        if stage == "ready":
            self.fraction = 1.0
        if self.client is not None:
            self.client.kill()  # its features are in the disk cache; the process is of no further use
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cancel(self) -> None:
        """No longer needed (the pair changed, the scene closed): kill its worker at once."""
        if not self.done:
            self.cancelled = True
            self._end("cancelled")

    def ready(self) -> bool:
        return self.done and self.field is not None
