"""Dense correspondence: a smooth fixed -> moving map from two feature pyramids (any backbone).

See :mod:`.dense` for the data path, :mod:`.field` for the conventions of the result.
"""

from .dense import PREALIGN_KINDS, RegistrationOptions, register
from .field import DenseField, write_field

__all__ = ["RegistrationOptions", "register", "DenseField", "write_field", "PREALIGN_KINDS"]
