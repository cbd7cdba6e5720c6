"""The cohort's summary: ``OUT/summary.csv`` (one row per pair, for scripts) and ``OUT/summary.md``
(the counts and the same table, for people), both written atomically at the end of every run,
also an interrupted one, so that what was done is always on record.

Pairs finished by an earlier run appear with their recorded figures and the status ``done
earlier``, so the summary always covers the whole cohort, not just this run's share.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..outputs import OutputSet

COLUMNS = (
    "id",
    "status",
    "seconds",
    "points",
    "tre_mean_mm",
    "tre_median_mm",
    "tre_max_mm",
    "identity_tre_mean_mm",
    "worker_peak_rss_mb",
    "error",
)


@dataclass
class BatchCounts:
    """Stage counts, reported as the run goes (the progress bar) and at its end."""

    pairs: int = 0  # in the cohort
    done_earlier: int = 0  # skipped: complete from a previous run
    matched: int = 0  # this run
    failed: int = 0
    scans: int = 0  # distinct scans in the cohort
    scans_planned: int = 0  # extractions this run submits
    scans_ready: int = 0  # extractions finished (encoded or found in the cache)
    scans_encoded: int = 0  # of those, computed by this run
    scans_failed: int = 0
    reencoded: int = 0  # pyramids a matching task had to compute (cache not shared)
    elapsed_s: float = 0.0

    @property
    def finished(self) -> int:
        return self.done_earlier + self.matched + self.failed


@dataclass
class BatchResult:
    """What :func:`~MedDIFTLib.batch.runner.run_batch` returns: counts, one record per pair, the
    extraction records, and the summary files."""

    counts: BatchCounts
    records: dict = field(default_factory=dict)  # pair id -> record
    extractions: list = field(default_factory=list)
    summary_csv: Path | None = None
    summary_md: Path | None = None
    interrupted: bool = False


def tre_record(matched: np.ndarray, labels: list, fixed_points: np.ndarray, truth) -> dict:
    """TRE of the matched points against ``truth`` (a PointSet in the moving scan), by label; also
    the TRE of doing nothing (the fixed points taken as they are), the baseline it must beat."""
    from ..evaluation.metrics import tre

    index = {lb: i for i, lb in enumerate(truth.labels)}
    rows = [(i, index[lb]) for i, lb in enumerate(labels) if lb in index]
    if not rows:
        return {"tre_error": "no label of the landmarks is in the truth file"}
    mine, theirs = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    t = truth.points[theirs]
    ok = np.isfinite(matched[mine]).all(1) & np.isfinite(t).all(1)
    after = tre(matched[mine][ok], t[ok])
    before = tre(fixed_points[mine][ok], t[ok])
    if not len(after):
        return {"tre_error": "no matched point with a true position"}
    return {
        "tre_mean_mm": float(np.mean(after)),
        "tre_median_mm": float(np.median(after)),
        "tre_max_mm": float(np.max(after)),
        "identity_tre_mean_mm": float(np.mean(before)),
        "tre_n": int(len(after)),
    }


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _row(pid: str, rec: dict) -> list:
    return [
        pid,
        rec.get("status", ""),
        rec.get("seconds"),
        rec.get("points"),
        rec.get("tre_mean_mm"),
        rec.get("tre_median_mm"),
        rec.get("tre_max_mm"),
        rec.get("identity_tre_mean_mm"),
        rec.get("peak_rss_mb"),
        rec.get("error", ""),
    ]


def write_summary(out: Path, pair_ids: list, result: BatchResult, header: dict) -> BatchResult:
    """Write both files for every pair of the cohort (in cohort order), as one set: a run stopped
    while they are written leaves the earlier pair of summaries or the new one, never one of each
    (both are the run's own files, replaced by every run: the cohort CSV is refused as either name
    before any work)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    rows = [_row(pid, result.records.get(pid, {"status": "not run"})) for pid in pair_ids]
    for r in rows:
        w.writerow([_cell(v) for v in r])
    table = buf.getvalue()

    c = result.counts
    lines = ["# MedDIFT batch summary", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [
        f"- pairs: {c.pairs} ({c.matched} matched in this run, {c.done_earlier} done earlier, "
        f"{c.failed} failed{', run interrupted' if result.interrupted else ''})",
        f"- distinct scans: {c.scans}; encoded in this run: {c.scans_encoded} "
        f"(extractions run: {c.scans_ready}, failed: {c.scans_failed})",
        f"- wall time: {c.elapsed_s:.1f} s",
    ]
    if c.reencoded:
        lines.append(
            f"- warning: {c.reencoded} pyramid(s) were encoded again by matching tasks: the feature cache "
            "is not on storage every worker sees (--cache-dir)"
        )
    tres = [result.records[p]["tre_mean_mm"] for p in pair_ids if "tre_mean_mm" in result.records.get(p, {})]
    if tres:
        lines.append(f"- mean of per-pair mean TRE: {np.mean(tres):.2f} mm over {len(tres)} pairs with truth")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(v).replace("|", "/").replace("\n", " ") for v in r) + " |")
    targets = {"csv": Path(out) / "summary.csv", "md": Path(out) / "summary.md"}
    with OutputSet(targets, force=True) as files:
        files.path("csv").write_text(table, encoding="utf-8")
        files.path("md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.commit()
    result.summary_csv, result.summary_md = targets["csv"], targets["md"]
    return result


__all__ = ["BatchCounts", "BatchResult", "tre_record", "write_summary", "COLUMNS"]
