"""Features: the backbone registry. A backbone turns a volume into a
:class:`~MedDIFTLib.features.pyramid.FeaturePyramid` with world geometry.

``maisi``: the MedDIFT method (MAISI v1 diffusion features, needs weights).
``mind``: a classical multi-scale self-similarity descriptor (MIND-SSC), no
weights, for running and comparing where no diffusion weights exist.
"""

from ..options import BackboneName
from .base import Backbone

__all__ = ["Backbone", "backbone_class", "create_backbone", "BACKBONES"]

BACKBONES = (BackboneName.MAISI.value, BackboneName.MIND_SSC.value)


def backbone_class(name: str) -> type[Backbone]:
    """The class of a backbone by name (``maisi``, ``mind-ssc``; ``auto`` is MAISI when its weights are
    found, so its class). Imported on demand: MAISI's module loads MONAI's networks."""
    from ..errors import InputError

    if name in (BackboneName.MAISI, "auto"):
        from .maisi.backbone import MaisiBackbone

        return MaisiBackbone
    if name in (BackboneName.MIND_SSC, "mind"):
        from .mind_ssc import MindSSCBackbone

        return MindSSCBackbone
    raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def create_backbone(name: str, **options) -> Backbone:
    """Build a backbone by name (``maisi`` or ``mind-ssc``) with its options."""
    from ..errors import InputError

    if name == "auto":
        raise InputError("create_backbone needs a backbone name; 'auto' is resolved by the session")
    return backbone_class(name)(**options)
