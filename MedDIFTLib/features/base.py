"""The backbone contract: a volume in, a :class:`FeaturePyramid` with world geometry out.

A backbone's :meth:`Backbone.identity` is part of every feature-cache key, so it must be cheap:
it is known from the options and the weight files' digests, without building a network (a cache
hit must not pay for loading the model)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

from ..data.geometry import Volume
from ..runtime import Cancel, Progress
from .pyramid import FeaturePyramid


class Backbone(ABC):
    """Turns a CT volume (HU, any orientation) into a feature pyramid."""

    name: str = "backbone"
    wants_accelerator: bool = False
    """Whether extraction gains from a GPU: ``device="auto"`` resolves to CUDA (when there is one) only
    for a backbone that says so (:func:`~MedDIFTLib.features.options.resolve_device`)."""

    @abstractmethod
    def identity(self) -> dict:
        """JSON-able description of everything that changes the features
        (backbone, options, weights' digests); part of the cache key."""

    @abstractmethod
    def extract(self, volume: Volume, progress: Optional[Progress] = None,
                cancel: Optional[Cancel] = None) -> FeaturePyramid:
        """Compute the pyramid. Calls ``progress`` per stage and checks
        ``cancel`` between stages (raising CancelledError)."""

    @property
    def level_names(self) -> list[str]:
        return []
