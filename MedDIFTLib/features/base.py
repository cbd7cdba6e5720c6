"""The backbone contract: a volume in, a :class:`FeaturePyramid` with world geometry out.

A backbone's :meth:`Backbone.identity` is part of every feature-cache key, so it must be cheap:
it is known from the options and the weight files' digests, without building a network (a cache
hit must not pay for loading the model)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..data.geometry import Volume
from ..runtime import Cancel, Progress
from .pyramid import FeaturePyramid


class Backbone(ABC):
    """Turns a CT volume (HU, any orientation) into a feature pyramid."""

    name: str = "backbone"
    wants_accelerator: bool = False
    """Whether extraction gains from a GPU: ``device="auto"`` resolves to CUDA (when there is one) only
    for a backbone that says so (:func:`~MedDIFTLib.features.options.resolve_device`)."""

    field_argmax: bool = False
    """Whether, with the dense prior, the paper's argmax within a small window around the field's
    position (:data:`~MedDIFTLib.matching.priors.DENSE_CHECK_MM`) is the match instead of the
    position itself: the one place this is decided, per backbone. False for every backbone so far.
    MIND-SSC, measured: the window's argmax blurs the field's answer (README, "Dense
    correspondence", the phantom-suite table: "MedDIFT dense, MIND-SSC" against "MedDIFT dense +
    argmax 6 mm"). MAISI: unmeasured (no weights where it was developed), so the field's position,
    the measured better answer of the other backbone. The argmax still scores the position
    (``argmax_gap_mm``), and an explicit search radius always makes it the match."""

    @abstractmethod
    def identity(self) -> dict:
        """JSON-able description of everything that changes the features
        (backbone, options, weights' digests); part of the cache key."""

    @abstractmethod
    def extract(self, volume: Volume, progress: Progress | None = None, cancel: Cancel | None = None) -> FeaturePyramid:
        """Compute the pyramid. Calls ``progress`` per stage and checks
        ``cancel`` between stages (raising CancelledError)."""

    @property
    def level_names(self) -> list[str]:
        return []
