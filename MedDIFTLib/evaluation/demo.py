"""The demo: the main job on a phantom pair with known breathing motion (``meddift demo``).

Needs nothing from outside: it makes the pair, samples distinctive landmarks,
matches them with the best backbone available (MAISI when its weights are
installed, otherwise the weight-free MIND-SSC descriptor, said plainly), and
writes the inputs, the matched points, one heatmap volume, a PNG figure and a
TRE table against the exact ground truth. It returns its results and prints nothing;
:mod:`MedDIFTLib.cli.demo` prints them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..data.geometry import Volume
from ..data.image_io import write_volume
from ..data.landmark_io import write_points
from ..data.points import PointSet
from ..matching.priors import DEFAULT_RADIUS_MM
from ..matching.search import MatchOptions
from ..options import BackboneName
from ..outputs import FolderSet, OutputSet
from ..registration import write_field
from ..session import EngineOptions, MatchSession
from .metrics import format_table, summarize, tre
from .phantom import PhantomPair, make_pair, sample_landmarks


def demo_names(label: str, figure: bool = True, dense: bool = True) -> list:
    """The files of the demo's set, ``label`` being the first landmark's (its heatmap and figure)."""
    names = [
        "fixed.nii.gz",
        "moving.nii.gz",
        "fixed_landmarks.csv",
        "true_moving_landmarks.csv",
        "matched_landmarks.csv",
        "matched_landmarks.mrk.json",
        f"heatmap_{label}.nii.gz",
        "tre.md",
        "summary.json",
    ]
    names += [f"demo_{label}.png"] if figure else []
    names += ["field.nii.gz", "dense_matched_landmarks.csv", "dense_matched_landmarks.mrk.json"] if dense else []
    return names


def run_demo(
    out_dir,
    engine: EngineOptions | None = None,
    radius_mm: float | None = DEFAULT_RADIUS_MM,
    n_landmarks: int = 20,
    seed: int = 0,
    shape=(128, 128, 128),
    spacing=(2.5, 2.5, 2.5),
    progress=None,
    figure: bool = True,
    log=None,
    dense: bool = True,
    force: bool = False,
) -> dict:
    """Run the demo into ``out_dir``; returns the summary (also written to ``summary.json``) with the
    TRE table as ``table``. ``log(message)`` receives a line per step.

    With ``dense`` the same landmarks are also matched through the dense registration of the
    pair (``--prior dense``, the most accurate mode on the phantom suite), a row of its own,
    with its displacement field (``field.nii.gz``) and its points (``dense_matched_landmarks.*``).

    The files are one set (:class:`~MedDIFTLib.outputs.FolderSet`): built aside and put in place
    together at the end, so that an interrupted demo leaves the earlier complete set or none; an
    earlier set is replaced only with ``force``, as a whole."""
    out = Path(out_dir)
    FolderSet.check(out, "demo", force=force)  # before any work
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    pair = make_pair(shape=shape, spacing=spacing, seed=seed)
    landmarks = sample_landmarks(pair, n=n_landmarks, seed=seed)
    assert landmarks.labels is not None  # PointSet.__post_init__ sets the labels
    truth = PointSet(pair.true_moving_points(landmarks.points), list(landmarks.labels), name="true positions")
    with FolderSet(out, "demo", demo_names(landmarks.labels[0], figure, dense), force=force) as files:
        _write_inputs(files, pair, landmarks, truth)
        log(f"phantom pair {shape} at {spacing} mm, {len(landmarks)} landmarks ({time.perf_counter() - t0:.1f} s)")
        session = MatchSession(engine or EngineOptions(), MatchOptions(radius_mm=radius_mm))
        report, table = _match_and_score(
            files, session, radius_mm, seed, pair, landmarks, truth, progress, log, dense, figure
        )
        files.path("summary.json").write_text(json.dumps(report, indent=2))
        files.commit()
    return {**report, "table": table, "out_dir": str(out)}


def _match_and_score(
    files: OutputSet,
    session: MatchSession,
    radius_mm,
    seed: int,
    pair: PhantomPair,
    landmarks: PointSet,
    truth: PointSet,
    progress,
    log,
    dense: bool,
    figure: bool,
) -> tuple[dict, str]:
    """The demo's work into ``files`` (its private copies): the match, the heatmap, the dense row,
    ``tre.md`` and the figure; returns the summary and the TRE table."""
    log(f"backbone: {session.backbone_note}")
    search = f"local search within {radius_mm:g} mm of the same world point" if radius_mm else "global search"
    log(f"search: {search}")
    matched, t_match = _match_landmarks(session, pair, landmarks, files, progress)
    assert landmarks.labels is not None  # PointSet.__post_init__ sets the labels
    label = landmarks.labels[0]
    heatmap = session.heatmap(pair.fixed, pair.moving, landmarks.points[0])
    write_volume(heatmap, files.path(f"heatmap_{label}.nii.gz"))

    e_before = tre(landmarks.points, truth.points)
    method = (
        "MedDIFT (MAISI features)" if session.backbone.name == BackboneName.MAISI else "MIND-SSC features (weight-free)"
    )
    rows = {"identity (before)": summarize(e_before), method: summarize(tre(matched.points, truth.points))}
    dense_report = _dense_row(session, pair, landmarks, truth, files, rows, progress, log) if dense else {}
    table = format_table(rows, f"TRE in mm on the phantom pair (seed {seed}, {len(landmarks)} landmarks)")
    report = {
        "backbone": session.backbone.name,
        "backbone_note": session.backbone_note,
        "search": search,
        "match_seconds": round(t_match, 2),
        "tre_before": rows["identity (before)"],
        "tre_after": rows[method],
        **dense_report,
    }
    files.path("tre.md").write_text(table + "\n\n" + "\n".join(_per_point(landmarks, truth, matched)) + "\n")
    if figure:
        _save_demo_figure(files, pair, landmarks, matched, truth, heatmap, method)
    return report, table


def _match_landmarks(
    session: MatchSession, pair: PhantomPair, landmarks: PointSet, files: OutputSet, progress
) -> tuple[PointSet, float]:
    """The landmarks matched by the search alone (no prior), written as CSV and markups; returns them
    with the seconds the match took (the summary's ``match_seconds``)."""
    t1 = time.perf_counter()
    matched = session.match(pair.fixed, pair.moving, landmarks, prior="none", progress=progress).points
    t_match = time.perf_counter() - t1
    write_points(matched, files.path("matched_landmarks.csv"))
    write_points(matched, files.path("matched_landmarks.mrk.json"))
    return matched, t_match


def _save_demo_figure(
    files: OutputSet,
    pair: PhantomPair,
    landmarks: PointSet,
    matched: PointSet,
    truth: PointSet,
    heatmap: Volume,
    method: str,
) -> None:
    """The figure of the first landmark: where it is, its match, its true position and the heatmap."""
    assert landmarks.labels is not None  # PointSet.__post_init__ sets the labels
    label = landmarks.labels[0]
    save_figure(
        files.path(f"demo_{label}.png"),
        pair,
        landmarks.points[0],
        matched.points[0],
        truth.points[0],
        heatmap,
        f"{label}: {method}, similarity {matched.values['similarity'][0]:.3f}",
    )


def _write_inputs(files: OutputSet, pair, landmarks: PointSet, truth: PointSet) -> None:
    """The pair and its landmarks as files, so that the demo can be repeated by hand."""
    write_volume(pair.fixed, files.path("fixed.nii.gz"))
    write_volume(pair.moving, files.path("moving.nii.gz"))
    write_points(landmarks, files.path("fixed_landmarks.csv"))
    write_points(truth, files.path("true_moving_landmarks.csv"))


def _dense_row(
    session: MatchSession, pair, landmarks: PointSet, truth: PointSet, files: OutputSet, rows: dict, progress, log
) -> dict:
    """The landmarks mapped through the dense registration: its field and points written, its TRE row added to
    ``rows``; returns the summary's dense entries."""
    t2 = time.perf_counter()
    field = session.register(pair.fixed, pair.moving, progress=progress)  # features already cached
    assert landmarks.labels is not None  # PointSet.__post_init__ sets the labels
    dense_pts = PointSet(field.map_points(landmarks.points), list(landmarks.labels), name="dense matches")
    write_field(field.displacement_on(pair.fixed.grid), pair.fixed.grid, files.path("field.nii.gz"))
    write_points(dense_pts, files.path("dense_matched_landmarks.csv"))
    write_points(dense_pts, files.path("dense_matched_landmarks.mrk.json"))
    dense_method = (
        "MedDIFT dense (MAISI features)"
        if session.backbone.name == BackboneName.MAISI
        else "MIND-SSC features, dense registration"
    )
    rows[dense_method] = summarize(tre(dense_pts.points, truth.points))
    report = {
        "dense_seconds": round(time.perf_counter() - t2, 2),
        "tre_dense": rows[dense_method],
        "folding_share": field.jacobian_stats()["folding_share"],
    }
    log(f"dense registration and its points: {report['dense_seconds']:.1f} s")
    return report


def _per_point(landmarks: PointSet, truth: PointSet, matched: PointSet) -> list[str]:
    """The per-landmark table of ``tre.md``: TRE before and after, similarity and forward-backward error."""
    e_before, e_after = tre(landmarks.points, truth.points), tre(matched.points, truth.points)
    lines = ["| label | before | after | similarity | fb error |", "|---|---|---|---|---|"]
    assert landmarks.labels is not None  # PointSet.__post_init__ sets the labels
    for i, lb in enumerate(landmarks.labels):
        lines.append(
            f"| {lb} | {e_before[i]:.2f} | {e_after[i]:.2f} | {matched.values['similarity'][i]:.3f} | "
            f"{matched.values['fb_error_mm'][i]:.2f} |"
        )
    return lines


def save_figure(path, pair, fixed_pt, match_pt, true_pt, heatmap, title: str) -> None:
    """Three orthogonal views of fixed (landmark) and moving (match, truth, heatmap overlay)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    # show the top quarter of the range between the median similarity and the peak
    hm_hi = float(heatmap.array.max())
    hm_lo = hm_hi - 0.25 * (hm_hi - float(np.median(heatmap.array)))
    views = [("axial", 2, (0, 1)), ("coronal", 1, (0, 2)), ("sagittal", 0, (1, 2))]
    for row, (vol, centre, marks) in enumerate(
        [
            (pair.fixed, fixed_pt, [(fixed_pt, "lime", "o", "landmark")]),
            (pair.moving, match_pt, [(true_pt, "cyan", "x", "true position"), (match_pt, "red", "+", "match")]),
        ]
    ):
        ijk = np.round(vol.world_to_ijk(centre)[0]).astype(int)
        ijk = np.clip(ijk, 0, np.asarray(vol.shape) - 1)
        for col, (name, axis, (a, b)) in enumerate(views):
            ax = axes[row, col]
            sl = [slice(None)] * 3
            sl[axis] = ijk[axis]
            img = vol.array[tuple(sl)]
            sp = np.linalg.norm(vol.ijk_to_ras[:3, :3], axis=0)
            ax.imshow(img.T, origin="lower", cmap="gray", vmin=-1000, vmax=400, aspect=sp[b] / sp[a])
            if row == 1:
                hm = heatmap.array[tuple(sl)]
                ax.imshow(
                    np.ma.masked_less(hm.T, hm_lo),
                    origin="lower",
                    cmap="inferno",
                    alpha=0.6,
                    vmin=hm_lo,
                    vmax=hm_hi,
                    aspect=sp[b] / sp[a],
                )
            for p, color, marker, lab in marks:
                q = vol.world_to_ijk(p)[0]
                ax.plot(q[a], q[b], marker=marker, color=color, ms=12, mew=2.5, mfc="none", ls="", label=lab)
            ax.set_title(f"{'fixed' if row == 0 else 'moving'} {name}")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
