"""Features: the backbone registry. A backbone turns a volume into a
:class:`~MedDIFTLib.features.pyramid.FeaturePyramid` with world geometry.

``maisi``: the MedDIFT method (MAISI v1 diffusion features, needs weights).
``mind``: a classical multi-scale self-similarity descriptor (MIND-SSC), no
weights, for running and comparing where no diffusion weights exist.
"""

from ..options import BackboneName
from .base import Backbone

__all__ = ["Backbone", "create_backbone", "BACKBONES"]

BACKBONES = (BackboneName.MAISI.value, BackboneName.MIND_SSC.value)


def create_backbone(name: str, **options) -> Backbone:
    """Build a backbone by name (``maisi`` or ``mind-ssc``) with its options."""
    from ..errors import InputError

    if name == BackboneName.MAISI:
        from .maisi.backbone import MaisiBackbone

        return MaisiBackbone(**options)
    if name in (BackboneName.MIND_SSC, "mind"):
        from .mind_ssc import MindSSCBackbone

        return MindSSCBackbone(**options)
    raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
