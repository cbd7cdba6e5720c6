"""What a job is asked to do, and the steps it is made of.

:class:`MatchRequest` holds everything the panel's parameter node says (node IDs and options), taken
when the job starts: the job never reads the panel again. A job is a list of steps, each a small
object that starts without waiting and says when it has finished: :class:`LaunchStep` (a worker
process), :class:`WorkerStep` (one request to the worker) and :class:`LocalStep` (file I/O in a
thread, :class:`Background`). Each step hands its result to its own ``on_result`` callable, so a new
step needs no branch elsewhere; its ``weight`` is its usual share of the job's time, for the progress
bar (a step without an entry in :data:`STEP_WEIGHTS` counts as 1).
:func:`read_field` brings a displacement field written by the worker back as RAS arrays.
:func:`substage_fraction` places a step's own sub-stages within the step's share of the progress.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from MedDIFTLib.data.geometry import flip_lps_ras, ijk_to_ras_from_itk
from MedDIFTLib.errors import InputError, MedDIFTError

if TYPE_CHECKING:
    from MedDIFTLib.service.client import Pending
    from MedDIFTLib.service.remote_client import RemotePending

# Relative cost of each kind of step, for the overall progress (feature extraction dominates).
STEP_WEIGHTS = {
    "launch": 2.0,
    "configure": 3.0,
    "local": 0.5,
    "load_volume": 0.5,
    "extract": 10.0,
    "register": 10.0,
    "match": 3.0,
    "heatmap": 1.0,
}


class OverwriteDeclined(InputError):
    """The user answered "No" to replacing an output list's points: nothing was started."""


class Background:
    """A function run in a daemon thread; ``done()`` never waits, ``result()`` re-raises its error.
    For file I/O of a job step: numpy and SimpleITK release the GIL while they write."""

    def __init__(self, fn: Callable[[], object]):
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="meddift-job-io")
        self._thread.start()

    def _run(self, fn):
        try:
            self._result = fn()
        except BaseException as err:  # handed to the GUI thread by result()
            self._error = err

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self):
        if self._error is not None:
            raise self._error
        return self._result


def _ignore(result: Any) -> None:
    return None


class Step:
    """One non-blocking part of a job: ``start(client)``, then ``finished()`` until True.

    Args:
        name: what the panel shows while it runs ("fixed features").
        kind: the kind of work, which sets its ``weight`` in the progress.
        on_result: called with the step's result when it has finished.
    """

    def __init__(self, name: str, kind: str, on_result: Callable[[Any], None] = _ignore):
        self.name, self.kind, self.on_result = name, kind, on_result
        self.weight = STEP_WEIGHTS.get(kind, 1.0)

    def start(self, client, on_event: Callable[[dict], None]) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        raise NotImplementedError


class LaunchStep(Step):
    """Start the worker process; finished once it said it is ready."""

    def __init__(self):
        super().__init__("start worker", "launch")
        self.client = None

    def start(self, client, on_event: Callable[[dict], None]) -> None:
        self.client = client
        client.launch()

    def finished(self) -> bool:
        return bool(self.client.poll_ready())


class WorkerStep(Step):
    """One request to the worker (``cmd`` with ``fields``); its progress events go to the job."""

    def __init__(self, name: str, cmd: str, fields: dict, on_result: Callable[[Any], None] = _ignore):
        super().__init__(name, cmd, on_result)
        self.cmd, self.fields = cmd, fields
        self.pending: Pending | RemotePending | None = None

    def start(self, client, on_event: Callable[[dict], None]) -> None:
        self.pending = client.submit(self.cmd, on_event=on_event, **self.fields)

    def finished(self) -> bool:
        assert self.pending is not None  # start() sent the request
        if not self.pending.poll():
            return False
        self.on_result(self.pending.result or {})
        return True


class LocalStep(Step):
    """A function run in a thread (file I/O); an ``OSError`` becomes the user's error."""

    def __init__(self, name: str, run: Callable[[], Any], on_result: Callable[[Any], None] = _ignore):
        super().__init__(name, "local", on_result)
        self.run = run
        self.background: Background | None = None

    def start(self, client, on_event: Callable[[dict], None]) -> None:
        self.background = Background(self.run)

    def finished(self) -> bool:
        assert self.background is not None  # start() started it
        if not self.background.done():
            return False
        try:
            result = self.background.result()
        except OSError as err:  # a full disk, a temporary folder removed under us
            raise MedDIFTError(f"{self.name}: {err}") from err
        self.on_result(result)
        return True


@dataclass
class MatchRequest:
    """What to match: node IDs and options (everything the GUI's parameter node holds)."""

    fixed_volume_id: str
    moving_volume_id: str
    fixed_points_id: str
    output_points_id: str | None = None
    heatmap_label: str | None = None  # None: the first defined point
    engine: dict = field(default_factory=dict)
    matching: dict = field(default_factory=dict)
    record_session: bool = True  # keep the pair as a two-scan tracking session in the scene (multi-scan: no)
    # "none": the paper's argmax (the module's own jobs: the background registration then re-places the points
    # from the field, MedDIFTSceneLib.densefield); "dense": points from the dense registration's map in this job
    prior: str | None = "none"
    transform: bool = False  # add a grid transform node with the dense map (fixed -> moving, "from parent")
    warp: bool = False  # add the moving volume resampled onto the fixed grid through the map
    transform_node_id: str | None = None  # the output transform the panel names (None: a new node)
    warped_node_id: str | None = None  # the output volume for the warped moving volume (None: a new node)
    inverse: bool = False  # also the inverse transform node (fixed -> moving as "to parent")

    def input_ids(self) -> dict[str, str]:
        """The nodes the job reads or writes, by the name the user knows them by."""
        ids = {
            "fixed volume": self.fixed_volume_id,
            "moving volume": self.moving_volume_id,
            "fixed landmarks": self.fixed_points_id,
        }
        if self.output_points_id:
            ids["output point list"] = self.output_points_id
        return ids


# Where each sub-stage the worker reports lies within its step (start, end), so that a step's own
# stages (each 0..1) move the bar through the step instead of filling it at the first stage's end.
SUBSTAGES = {
    "register": {
        "features": (0.0, 0.1),
        "pre-align": (0.1, 0.2),
        "descriptors": (0.2, 0.3),
        "discrete search": (0.3, 0.5),
        "refine field": (0.5, 1.0),
    },
    "extract": {
        "preprocess": (0.0, 0.05),
        "load model": (0.05, 0.15),
        "vae encode": (0.15, 0.55),
        "unet": (0.55, 1.0),
        "mind-ssc": (0.05, 1.0),
    },
    "match": {"match": (0.0, 0.7), "match back (forward-backward check)": (0.7, 1.0)},
}


def node_or_none(scene, node_id: str | None):
    """The node of ``node_id`` in ``scene``; None for no ID (or a node deleted since)."""
    return scene.GetNodeByID(node_id) if node_id else None


def substage_fraction(cmd: str, stage: str, fraction: float) -> float:
    """The step's own fraction done when its sub-stage ``stage`` reports ``fraction``: the first part
    of ``"features: mind-ssc"`` or ``"fixed: unet"`` that the step knows places it; an unknown stage
    spans the whole step."""
    known = SUBSTAGES.get(cmd, {})
    start, end = next((known[part] for part in stage.split(": ") if part in known), (0.0, 1.0))
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


@dataclass
class MatchResult:
    """What a finished job put into the scene, and what it matched."""

    points_node: Any  # vtkMRMLMarkupsFiducialNode with the matches
    heatmap_node: Any  # the module's similarity volume
    matched: Any  # PointSet of the matches (RAS mm) with their scores
    heatmap_label: str  # the landmark the heatmap is for
    warnings: list = field(default_factory=list)  # the engine's doubts about the inputs
    transform_node: Any = None  # grid transform with the dense map, when asked for
    warped_node: Any = None  # the moving volume resampled onto the fixed grid, when asked for
    inverse_transform_node: Any = None  # the same map as "to parent", when asked for
    session: Any = None  # the two-scan TrackingSession of this pair, when recorded

    def __getitem__(self, key: str) -> Any:
        """``result["points_node"]``: scripts written when the result was a dict keep working."""
        return getattr(self, key)


def read_field(path) -> tuple:
    """An ITK displacement field file as (RAS displacement (I, J, K, 3), IJK-to-RAS of its grid)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    lps = sitk.GetArrayFromImage(img).transpose(2, 1, 0, 3)
    return flip_lps_ras(lps), ijk_to_ras_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
