"""What a job is asked to do, and the pieces of its steps that run off the GUI thread.

:class:`MatchRequest` holds everything the panel's parameter node says (node IDs and options);
:class:`Background` runs a step's file I/O in a thread so that polling never waits for it;
:func:`read_field` brings a displacement field written by the worker back as RAS arrays.
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


def read_field(path) -> tuple:
    """An ITK displacement field file as (RAS displacement (I, J, K, 3), IJK-to-RAS of its grid)."""
    import SimpleITK as sitk

    from MedDIFTLib.data.geometry import flip_lps_ras, ijk_to_ras_from_itk

    img = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    lps = sitk.GetArrayFromImage(img).transpose(2, 1, 0, 3)
    return flip_lps_ras(lps), ijk_to_ras_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
