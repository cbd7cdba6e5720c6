"""One exception family for everything a user can get wrong.

Every error names the input (file, node, point) and says what to do, so the
CLI, the worker and the Slicer module can show ``str(err)`` as it is.
"""

from __future__ import annotations


class MedDIFTError(Exception):
    """Base class: an error whose message is meant for the user."""


class InputError(MedDIFTError, ValueError):
    """An input (image, landmark file, option) is unusable as given."""


class ImageReadError(InputError):
    """An image file is missing, unreadable, or not a 3D scalar volume."""


class LandmarkFormatError(InputError):
    """A landmark file is missing, malformed, or in an unknown format."""


class GeometryError(InputError):
    """Points or volumes do not fit together in world space."""


class OutputWriteError(MedDIFTError, OSError):
    """An output could not be written (disk full, no permission); the old file, if any, is intact."""


class WeightsError(MedDIFTError):
    """Model weights are missing, corrupt, or not the expected checkpoint."""


class CancelledError(MedDIFTError):
    """The user cancelled a running job."""
