"""Target registration error (TRE): per landmark in mm, and its summaries.

A landmark without a prediction (NaN) is a failure: it is counted and
reported, never silently dropped from the mean.
"""

from __future__ import annotations

import numpy as np

from ..data.geometry import as_points


def tre(predicted_ras, true_ras) -> np.ndarray:
    """Euclidean error per landmark (mm); NaN where a prediction is missing."""
    p, t = as_points(predicted_ras), as_points(true_ras)
    if p.shape != t.shape:
        raise ValueError(f"{len(p)} predictions for {len(t)} true points")
    return np.linalg.norm(p - t, axis=1)


def summarize(tre_mm) -> dict:
    """mean, std, median, p90, max over the landmarks that have a prediction; n and n_failed."""
    e = np.asarray(tre_mm, dtype=np.float64).reshape(-1)
    ok = np.isfinite(e)
    out: dict[str, float] = {"n": int(e.size), "n_failed": int((~ok).sum())}
    if ok.any():
        v = e[ok]
        out.update(
            mean=float(v.mean()),
            std=float(v.std()),
            median=float(np.median(v)),
            p90=float(np.percentile(v, 90)),
            max=float(v.max()),
        )
    else:
        out.update(mean=np.nan, std=np.nan, median=np.nan, p90=np.nan, max=np.nan)
    return out


def format_table(rows: dict, title: str = "") -> str:
    """A markdown table: one row per name -> summary (from :func:`summarize`)."""
    lines = [title] if title else []
    lines += ["| method | n | mean | std | median | p90 | max | failed |", "|---|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['n']} | {s['mean']:.2f} | {s['std']:.2f} | {s['median']:.2f} | "
            f"{s['p90']:.2f} | {s['max']:.2f} | {s['n_failed']} |"
        )
    return "\n".join(lines)
