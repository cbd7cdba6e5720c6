"""Lesion follow-up: the measurements a reader carries across time points, and the response table (RECIST 1.1).

Free of Qt, Slicer and torch: the Slicer worksheet, ``meddift recist`` and a cohort script use the same rules.
"""

from .recist import (
    Kind,
    Lesion,
    NewLesions,
    Response,
    TimePoint,
    TimePointResult,
    Worksheet,
    assess,
)

__all__ = ["Kind", "Lesion", "NewLesions", "Response", "TimePoint", "TimePointResult", "Worksheet", "assess"]
