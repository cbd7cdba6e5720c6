"""Cohort runs: ``meddift batch`` on Ray (an optional extra, imported only when a batch runs).

- :mod:`.cohort`: the cohort CSV, checked as a whole before any work; scans identified by content.
- :mod:`.plan`: what to run; manifests that let a restart skip pairs whose outputs are verified.
- :mod:`.tasks`: extract one scan, match one pair (plain functions that Ray runs).
- :mod:`.runner`: the Ray plan, retries, outputs written as results arrive.
- :mod:`.summary`: counts, ``summary.csv`` and ``summary.md``.
- :mod:`.phantom_cohort`: a phantom cohort with exact truth (tests, benchmark, trying it out).
"""

from .cohort import Pair, read_cohort
from .runner import run_batch  # imports Ray only when a batch runs
from .summary import BatchCounts, BatchResult

__all__ = ["Pair", "read_cohort", "BatchCounts", "BatchResult", "run_batch"]
