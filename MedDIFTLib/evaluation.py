"""Evaluation harness (first part): cases, methods that map fixed landmarks into the moving
scan, TRE per landmark, and a markdown report with plots.

Every method answers the same question on the same landmarks: where are the
fixed scan's landmarks in the moving scan (RAS mm)? TRE is the Euclidean
distance to the true moving landmarks; "identity" (the same world point) is
the error before registration.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from .atomic import write_text_atomic
from .geometry import Volume
from .landmarks import PointSet
from .metrics import format_table, summarize, tre


@dataclass
class Case:
    """One fixed/moving pair with corresponding landmarks (RAS mm)."""

    dataset: str
    name: str
    fixed: Volume
    moving: Volume
    fixed_points: PointSet
    moving_points: PointSet  # the truth, same order as fixed_points


def phantom_suite(seeds=(0, 1), amplitudes=(15.0, 25.0), noise_hu=(20.0,), n_landmarks: int = 20,
                  shape=(96, 96, 96), spacing=(3.0, 3.0, 3.0)) -> Iterable[Case]:
    """Generated pairs over seeds x breathing amplitudes x noise levels, with exact ground truth."""
    from .phantom import BreathingMotion, make_pair, sample_landmarks

    for seed in seeds:
        for amp in amplitudes:
            for noise in noise_hu:
                pair = make_pair(shape=shape, spacing=spacing, seed=seed, noise_hu=noise,
                                 motion=BreathingMotion(amplitude_mm=amp))
                lm = sample_landmarks(pair, n=n_landmarks, seed=seed)
                truth = PointSet(pair.true_moving_points(lm.points), list(lm.labels))
                yield Case("phantom", f"seed{seed}_amp{amp:g}_noise{noise:g}", pair.fixed, pair.moving, lm, truth)


def learn2reg_cases(root, split: str = "Tr", fixed_suffix: str = "_0000", moving_suffix: str = "_0001",
                    task: str = "LungCT") -> Iterable[Case]:
    """Learn2Reg layout: ``images{split}/{task}_00XX{suffix}.nii.gz`` with keypoints in
    ``keypoints{split}/{task}_00XX{suffix}.csv`` (0-based voxel indices of *that* image)."""
    from .errors import InputError
    from .image_io import read_volume
    from .landmarks import read_points

    root = Path(root)
    images = root / f"images{split}"
    fixed_files = sorted(images.glob(f"{task}_*{fixed_suffix}.nii.gz"))
    if not fixed_files:
        raise InputError(f"{images}: no {task}_XXXX{fixed_suffix}.nii.gz images (Learn2Reg layout expected)")
    for ff in fixed_files:
        case = ff.name[: -len(f"{fixed_suffix}.nii.gz")]
        mf = images / f"{case}{moving_suffix}.nii.gz"
        kf = root / f"keypoints{split}" / f"{case}{fixed_suffix}.csv"
        km = root / f"keypoints{split}" / f"{case}{moving_suffix}.csv"
        missing = [str(p) for p in (mf, kf, km) if not p.exists()]
        if missing:
            raise InputError(f"case {case}: missing {', '.join(missing)}")
        fixed, moving = read_volume(ff), read_volume(mf)
        fp = read_points(kf, format="learn2reg", reference=fixed)
        mp = read_points(km, format="learn2reg", reference=moving)
        if len(fp) != len(mp):
            raise InputError(f"case {case}: {len(fp)} fixed keypoints but {len(mp)} moving keypoints")
        labels = [f"K{i + 1}" for i in range(len(fp))]
        yield Case(f"learn2reg-{task}", case, fixed, moving, PointSet(fp.points, labels), PointSet(mp.points, labels))


# --- methods ----------------------------------------------------------------------------


class Method:
    """Maps a case's fixed landmarks into its moving scan."""

    name = "method"

    def map_points(self, case: Case) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class Identity(Method):
    name = "identity"

    def map_points(self, case: Case) -> np.ndarray:
        return case.fixed_points.points.copy()


class MedDIFTMethod(Method):
    """The MedDIFT pipeline (MAISI features when available, else the weight-free descriptor)."""

    def __init__(self, engine=None, radius_mm: Optional[float] = 25.0, name: Optional[str] = None):
        from .matching import MatchOptions
        from .pipeline import EngineOptions, MatchSession

        self.session = MatchSession(engine or EngineOptions(use_cache=False), MatchOptions(radius_mm=radius_mm))
        self.radius_mm = radius_mm
        self.name = name or ("MedDIFT (MAISI)" if self.session.backbone.name == "maisi"
                             else "MIND-SSC (weight-free MedDIFT pipeline)")

    def map_points(self, case: Case) -> np.ndarray:
        from .priors import identity_prior

        out = self.session.match_points(case.fixed, case.moving, case.fixed_points,
                                        prior=identity_prior if self.radius_mm else None)
        return out.points


class SimpleITKBSpline(Method):
    """Free-form deformation (B-spline) with a multi-resolution schedule, SimpleITK's registration.

    The moving image is registered to the fixed one; the resulting transform
    maps fixed-image points to moving-image points (ITK's resampling
    convention, LPS), which is exactly the landmark mapping needed.
    """

    name = "SimpleITK B-spline"

    def __init__(self, mesh_mm: float = 40.0, iterations: int = 50, shrink=(4, 2, 1), sigmas=(2.0, 1.0, 0.0)):
        self.mesh_mm, self.iterations, self.shrink, self.sigmas = mesh_mm, iterations, shrink, sigmas

    def transform(self, case: Case):
        import SimpleITK as sitk

        from .image_io import to_sitk

        fixed = sitk.Cast(to_sitk(case.fixed), sitk.sitkFloat32)
        moving = sitk.Cast(to_sitk(case.moving), sitk.sitkFloat32)
        extent = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
        mesh = [max(1, int(round(e / self.mesh_mm))) for e in extent]
        tx = sitk.BSplineTransformInitializer(fixed, mesh)
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMeanSquares()
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.1, seed=0)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=self.iterations)
        reg.SetShrinkFactorsPerLevel(list(self.shrink))
        reg.SetSmoothingSigmasPerLevel(list(self.sigmas))
        reg.SetInitialTransform(tx, inPlace=True)
        return reg.Execute(fixed, moving)

    def map_points(self, case: Case) -> np.ndarray:
        from .priors import itk_transform_prior

        return itk_transform_prior(self.transform(case))(case.fixed_points.points)


METHODS: dict[str, Callable[[], Method]] = {
    "identity": Identity,
    "meddift": MedDIFTMethod,
    "sitk-bspline": SimpleITKBSpline,
}


# --- running and reporting ------------------------------------------------------------------


class _PeakRSS:
    """Peak resident memory of this process while a block runs (sampled every 20 ms)."""

    def __enter__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak, self.stop = self.proc.memory_info().rss, False
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
    runs: list = field(default_factory=list)  # per case and method: seconds, peak GB

    def summary(self, dataset: str) -> dict:
        out = {}
        for method in dict.fromkeys(r["method"] for r in self.rows if r["dataset"] == dataset):
            errs = [r["tre_mm"] for r in self.rows if r["dataset"] == dataset and r["method"] == method]
            runs = [r for r in self.runs if r["dataset"] == dataset and r["method"] == method]
            s = summarize(errs)
            s["seconds_per_case"] = float(np.mean([r["seconds"] for r in runs]))
            s["peak_gb"] = float(np.max([r["peak_gb"] for r in runs]))
            out[method] = s
        return out


def evaluate(cases: Iterable[Case], methods: list[Method], log=print) -> Results:
    res = Results()
    for case in cases:
        before = tre(case.fixed_points.points, case.moving_points.points)
        for m in methods:
            t = time.perf_counter()
            with _PeakRSS() as peak:
                mapped = m.map_points(case)
            seconds = time.perf_counter() - t
            err = tre(mapped, case.moving_points.points)
            res.runs.append({"dataset": case.dataset, "case": case.name, "method": m.name, "seconds": seconds,
                             "peak_gb": peak.peak / 1e9})
            for i, lb in enumerate(case.fixed_points.labels):
                res.rows.append({"dataset": case.dataset, "case": case.name, "method": m.name, "label": lb,
                                 "tre_mm": float(err[i]), "initial_mm": float(before[i])})
            log(f"{case.dataset}/{case.name}: {m.name}: mean TRE {np.nanmean(err):.2f} mm "
                f"(before {np.mean(before):.2f}) in {seconds:.1f} s")
    return res


def write_report(res: Results, out_dir, title: str = "MedDIFT evaluation") -> Path:
    """``report.md`` (a table per dataset), ``landmarks.csv`` and two plots per dataset."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["dataset", "case", "method", "label", "tre_mm", "initial_mm"],
                       lineterminator="\n")
    w.writeheader()
    w.writerows(res.rows)
    write_text_atomic(out / "landmarks.csv", buf.getvalue())
    lines = [f"# {title}", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in res.rows):
        summ = res.summary(dataset)
        n_cases = len({r["case"] for r in res.rows if r["dataset"] == dataset})
        lines += [format_table(summ, f"## {dataset} ({n_cases} cases; TRE in mm)"), "",
                  "| method | time per case (s) | peak memory (GB) |", "|---|---|---|"]
        lines += [f"| {m} | {s['seconds_per_case']:.1f} | {s['peak_gb']:.2f} |" for m, s in summ.items()]
        lines += ["", f"![TRE per method]({dataset}_tre_box.png)", "",
                  f"![TRE against initial displacement]({dataset}_tre_vs_initial.png)", ""]
        _plots(res, dataset, out)
    report = out / "report.md"
    write_text_atomic(report, "\n".join(lines))
    return report


def _plots(res: Results, dataset: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in res.rows if r["dataset"] == dataset))
    data = [[r["tre_mm"] for r in res.rows if r["dataset"] == dataset and r["method"] == m] for m in methods]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(methods), 4))
    ax.boxplot([np.asarray(d)[np.isfinite(d)] for d in data], showfliers=True)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=15, ha="right")
    ax.set_ylabel("TRE (mm)")
    ax.set_title(f"{dataset}: TRE per landmark")
    fig.tight_layout()
    fig.savefig(out / f"{dataset}_tre_box.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for m in methods:
        rows = [r for r in res.rows if r["dataset"] == dataset and r["method"] == m]
        ax.scatter([r["initial_mm"] for r in rows], [r["tre_mm"] for r in rows], s=12, label=m, alpha=0.7)
    ax.set_xlabel("initial displacement (mm)")
    ax.set_ylabel("TRE (mm)")
    ax.legend(fontsize=8)
    ax.set_title(f"{dataset}: TRE against initial displacement")
    fig.tight_layout()
    fig.savefig(out / f"{dataset}_tre_vs_initial.png", dpi=90)
    plt.close(fig)
