"""What a job is asked to do, and the pieces of its steps that run off the GUI thread.

:class:`MatchRequest` holds everything the panel's parameter node says (node IDs and options);
:class:`Background` runs a step's file I/O in a thread so that polling never waits for it;
:func:`read_field` brings a displacement field written by the worker back as RAS arrays;
:func:`substage_fraction` places a step's own sub-stages within the step's share of the progress.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional


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


@dataclass
class MatchRequest:
    """What to match: node IDs and options (everything the GUI's parameter node holds)."""

    fixed_volume_id: str
    moving_volume_id: str
    fixed_points_id: str
    output_points_id: Optional[str] = None
    heatmap_label: Optional[str] = None  # None: the first defined point
    engine: dict = field(default_factory=dict)
    matching: dict = field(default_factory=dict)
    record_session: bool = True  # keep the pair as a two-scan tracking session in the scene (multi-scan: no)
    prior: Optional[str] = None  # "dense": points from the dense registration's map
    transform: bool = False  # add a grid transform node with the dense map (fixed -> moving, "from parent")
    warp: bool = False  # add the moving volume resampled onto the fixed grid through the map
    transform_node_id: Optional[str] = None  # the output transform the panel names (None: a new node)
    warped_node_id: Optional[str] = None  # the output volume for the warped moving volume (None: a new node)
    inverse: bool = False  # also the inverse transform node (fixed -> moving as "to parent")


# Where each sub-stage the worker reports lies within its step (start, end), so that a step's own
# stages (each 0..1) move the bar through the step instead of filling it at the first stage's end.
SUBSTAGES = {
    "register": {"features": (0.0, 0.1), "pre-align": (0.1, 0.2), "descriptors": (0.2, 0.3),
                 "discrete search": (0.3, 0.5), "refine field": (0.5, 1.0)},
    "extract": {"preprocess": (0.0, 0.05), "load model": (0.05, 0.15), "vae encode": (0.15, 0.55),
                "unet": (0.55, 1.0), "mind-ssc": (0.05, 1.0)},
    "match": {"match": (0.0, 0.7), "match back (forward-backward check)": (0.7, 1.0)},
}


def node_or_none(scene, node_id: Optional[str]):
    """The node of ``node_id`` in ``scene``; None for no ID (or a node deleted since)."""
    return scene.GetNodeByID(node_id) if node_id else None


def substage_fraction(cmd: str, stage: str, fraction: float) -> float:
    """The step's own fraction done when its sub-stage ``stage`` reports ``fraction``: the first part
    of ``"features: mind-ssc"`` or ``"fixed: unet"`` that the step knows places it; an unknown stage
    spans the whole step."""
    known = SUBSTAGES.get(cmd, {})
    start, end = next((known[part] for part in stage.split(": ") if part in known), (0.0, 1.0))
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


def read_field(path) -> tuple:
    """An ITK displacement field file as (RAS displacement (I, J, K, 3), IJK-to-RAS of its grid)."""
    import SimpleITK as sitk

    from MedDIFTLib.data.geometry import flip_lps_ras, ijk_to_ras_from_itk

    img = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    lps = sitk.GetArrayFromImage(img).transpose(2, 1, 0, 3)
    return flip_lps_ras(lps), ijk_to_ras_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
