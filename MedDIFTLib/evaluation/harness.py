"""Evaluation harness: run methods on cases, TRE per landmark, a markdown report with plots.

Every method (:mod:`.eval_methods`) answers the same question on the same
landmarks of the same cases (:mod:`.eval_cases`): where are the fixed scan's
landmarks in the moving scan (RAS mm)? TRE is the Euclidean distance to the
true moving landmarks; the TRE before registration is the identity's.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..outputs import FolderSet
from .cases import Case
from .methods import Method
from .metrics import format_table, summarize, tre


class _PeakRSS:
    """Peak resident memory of this process while a block runs (sampled every 20 ms)."""

    def __enter__(self):
        import psutil

        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        return False


@dataclass
class Results:
    rows: list = field(default_factory=list)  # per landmark
    runs: list = field(default_factory=list)  # per case and method: seconds, memory, error

    def datasets(self) -> list:
        return list(dict.fromkeys(r["dataset"] for r in self.rows))

    def methods(self, dataset: str) -> list:
        return list(dict.fromkeys(r["method"] for r in self.rows if r["dataset"] == dataset))

    def errors(self, dataset: str, method: str, case: str | None = None) -> list:
        return [
            r["tre_mm"]
            for r in self.rows
            if r["dataset"] == dataset and r["method"] == method and (case is None or r["case"] == case)
        ]

    def summary(self, dataset: str) -> dict:
        """Per method: TRE statistics over all landmarks, mean seconds per case, peak memory."""
        out = {}
        for method in self.methods(dataset):
            runs = [r for r in self.runs if r["dataset"] == dataset and r["method"] == method]
            s = summarize(self.errors(dataset, method))
            s["seconds_per_case"] = float(np.mean([r["seconds"] for r in runs]))
            s["peak_gb"] = float(np.max([r["peak_gb"] for r in runs]))
            s["extra_gb"] = float(np.max([r["extra_gb"] for r in runs]))
            s["failed_cases"] = sum(1 for r in runs if r["error"])
            for k in ("folding_percent", "log_jacobian_std"):  # NaN: the method keeps no map
                vals = [r.get(k, np.nan) for r in runs]
                s[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            out[method] = s
        return out


def evaluate(cases: Iterable[Case], methods: list[Method], log=print) -> Results:
    """Every method on every case. A method that raises on a case scores NaN (a failure) on its
    landmarks and the error is logged and kept; the other methods and cases still run."""
    res = Results()
    for case in cases:
        before = tre(case.fixed_points.points, case.moving_points.points)
        for m in methods:
            t = time.perf_counter()
            error = ""
            with _PeakRSS() as mem:
                try:
                    mapped = np.asarray(m.map_points(case), dtype=np.float64)
                except Exception as exc:  # noqa: BLE001 - one method's failure must not end the evaluation
                    error = f"{type(exc).__name__}: {exc}"
                    mapped = np.full_like(case.fixed_points.points, np.nan)
            seconds = time.perf_counter() - t
            err = tre(mapped, case.moving_points.points)
            reg = (None if error else m.regularity(case)) or {}
            res.runs.append(
                {
                    "dataset": case.dataset,
                    "case": case.name,
                    "method": m.name,
                    "seconds": seconds,
                    "peak_gb": mem.peak / 1e9,
                    "extra_gb": (mem.peak - mem.start) / 1e9,
                    "error": error,
                    "folding_percent": reg.get("folding_percent", float("nan")),
                    "log_jacobian_std": reg.get("log_jacobian_std", float("nan")),
                }
            )
            assert case.fixed_points.labels is not None  # PointSet.__post_init__ sets the labels
            for i, lb in enumerate(case.fixed_points.labels):
                res.rows.append(
                    {
                        "dataset": case.dataset,
                        "case": case.name,
                        "method": m.name,
                        "label": lb,
                        "tre_mm": float(err[i]),
                        "initial_mm": float(before[i]),
                    }
                )
            status = f"FAILED ({error})" if error else f"mean TRE {np.nanmean(err):.2f} mm"
            log(f"{case.dataset}/{case.name}: {m.name}: {status} (before {np.mean(before):.2f}) in {seconds:.1f} s")
        for m in methods:
            m.end_case()
    return res


def report_markdown(res: Results, title: str = "MedDIFT evaluation", notes=()) -> str:
    """The report text: per dataset, TRE over all landmarks, cost, and mean TRE per case."""
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    for dataset in res.datasets():
        summ = res.summary(dataset)
        cases = list(dict.fromkeys(r["case"] for r in res.rows if r["dataset"] == dataset))
        lines += [
            format_table(summ, f"## {dataset} ({len(cases)} cases; TRE in mm over all landmarks)"),
            "",
            "| method | time per case (s) | peak process memory (GB) | peak added by the method (GB) | failed cases |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {m} | {s['seconds_per_case']:.1f} | {s['peak_gb']:.2f} | {s['extra_gb']:.2f} | {s['failed_cases']} |"
            for m, s in summ.items()
        ]
        lines += _regularity_table(summ)
        methods = list(summ)
        lines += [
            "",
            f"### {dataset}: mean TRE per case (mm)",
            "",
            "| case | " + " | ".join(methods) + " |",
            "|---" * (len(methods) + 1) + "|",
        ]
        for c in cases:
            cells = []
            for m in methods:
                e = np.asarray(res.errors(dataset, m, c), dtype=np.float64)
                cells.append(f"{np.nanmean(e):.2f}" if np.isfinite(e).any() else "failed")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        failures = [r for r in res.runs if r["dataset"] == dataset and r["error"]]
        if failures:
            lines += ["", "Failures:", ""] + [f"- {r['case']}, {r['method']}: {r['error']}" for r in failures]
        lines += [
            "",
            f"![TRE per method]({dataset}_tre_box.png)",
            "",
            f"![TRE against initial displacement]({dataset}_tre_vs_initial.png)",
            "",
        ]
    return "\n".join(lines)


def _regularity_table(summ: dict) -> list:
    """Folding and SD of the log-Jacobian (fixed field of view, mean over cases) of the methods that keep a map."""
    rows = [(m, s) for m, s in summ.items() if np.isfinite(s.get("log_jacobian_std", np.nan))]
    if not rows:
        return []
    lines = ["", "| method | folding (% of voxels) | SD log-Jacobian |", "|---|---|---|"]
    return lines + [f"| {m} | {s['folding_percent']:.3f} | {s['log_jacobian_std']:.3f} |" for m, s in rows]


def report_names(res: Results) -> list:
    """The files of the report's set: ``landmarks.csv``, two plots per dataset, ``report.md``."""
    plots = [f"{d}_{kind}.png" for d in res.datasets() for kind in ("tre_box", "tre_vs_initial")]
    return ["landmarks.csv", *plots, "report.md"]


def write_report(
    res: Results,
    out_dir,
    title: str = "MedDIFT evaluation",
    notes=(),
    force: bool = False,
    who: str = "evaluate",
    inputs: dict | None = None,
) -> Path:
    """``report.md``, ``landmarks.csv`` (one row per landmark and method) and two plots per dataset, as
    one set (:class:`~MedDIFTLib.outputs.FolderSet`): put in place together, so that an interrupted
    report leaves the earlier complete one or none; an earlier report is replaced only with ``force``,
    as a whole (its plots of datasets not evaluated now included).

    Args:
        res: the evaluation's results.
        out_dir: the ``--out`` folder (new, empty, or an earlier report of ``who``).
        title: the report's heading.
        notes: lines listed under the heading.
        force: replace an earlier report.
        who: the command (``evaluate``, ``ablate``), named in the folder's mark and in messages.
        inputs: name -> path of the evaluation's datasets (no output goes among them).
    """
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=["dataset", "case", "method", "label", "tre_mm", "initial_mm"], lineterminator="\n"
    )
    w.writeheader()
    w.writerows(res.rows)
    with FolderSet(out_dir, who, report_names(res), inputs, force) as files:
        files.path("landmarks.csv").write_text(buf.getvalue())
        for dataset in res.datasets():
            _plots(res, dataset, files.path)
        files.path("report.md").write_text(report_markdown(res, title, notes))
        written = files.commit()
    return written["report.md"]


def _plots(res: Results, dataset: str, place) -> None:
    """The dataset's two plots, each written to ``place(name)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = res.methods(dataset)
    data = [[r["tre_mm"] for r in res.rows if r["dataset"] == dataset and r["method"] == m] for m in methods]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(methods), 4))
    ax.boxplot([np.asarray(d)[np.isfinite(d)] for d in data], showfliers=True)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=15, ha="right")
    ax.set_ylabel("TRE (mm)")
    ax.set_title(f"{dataset}: TRE per landmark")
    fig.tight_layout()
    _save(fig, place(f"{dataset}_tre_box.png"))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for m in methods:
        rows = [r for r in res.rows if r["dataset"] == dataset and r["method"] == m]
        ax.scatter([r["initial_mm"] for r in rows], [r["tre_mm"] for r in rows], s=12, label=m, alpha=0.7)
    ax.set_xlabel("initial displacement (mm)")
    ax.set_ylabel("TRE (mm)")
    ax.legend(fontsize=8)
    ax.set_title(f"{dataset}: TRE against initial displacement")
    fig.tight_layout()
    _save(fig, place(f"{dataset}_tre_vs_initial.png"))


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
