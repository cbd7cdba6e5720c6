"""Registration cost curve: wall time, CPU time and peak memory of each method against the pair's size.

Every size gets one pair with a known motion: a real CT of ``../shared`` resampled to that size and
deformed by a known smooth field (:mod:`MedDIFTLib.evaluation.warped`), or the phantom when the
shared data are absent (the output says which). Each method runs in a child process of its own:
``meddift register`` itself for dense (the command a user runs, outputs included), a worker of this
script for ANTs SyN and ConvexAdam (:mod:`MedDIFTLib.evaluation.methods`). ``os.wait4`` gives that
child's own CPU time (user + sys) and peak resident memory, so one method's cost never mixes with
another's or with the pair's preparation. A run past ``--timeout-per-run`` or over ``--max-memory-gb``
is stopped and recorded as such; the curve goes on.

    PYTHONPATH=. python Testing/Benchmarks/bench_registration.py --sizes 64,96,128,512x512x300 --out DIR

The growth exponent of a method is the least-squares slope of log(wall time) against log(voxels)
over its finished runs: 1 is linear in the voxels, 2 quadratic.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from MedDIFTLib.data.image_io import read_volume  # noqa: E402
from MedDIFTLib.errors import InputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost_curve_pairs import pair_source, prepare_pair  # noqa: E402  (the script's folder is not a package)

METHOD_NAMES = ("dense", "ants-syn", "convexadam")
COLUMNS = (
    "size",
    "voxels",
    "spacing_mm",
    "pair",
    "method",
    "status",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "tre_mean_mm",
    "tre_max_mm",
    "initial_tre_mm",
    "load_1min",
)


def parse_sizes(spec: str) -> list[tuple[int, int, int]]:
    """``"64,96,512x512x300"``: a cube edge or a full ``XxYxZ`` shape, each at least 16 voxels a side.

    Args:
        spec: comma-separated sizes.
    """
    out = []
    for item in (s.strip().lower() for s in spec.split(",") if s.strip()):
        try:
            dims = tuple(int(v) for v in item.split("x"))
        except ValueError:
            raise InputError(f"--sizes: {item!r} is neither a cube edge (64) nor a shape (512x512x300)") from None
        if len(dims) == 1:
            dims = dims * 3
        if len(dims) != 3 or min(dims) < 16:
            raise InputError(f"--sizes: {item!r} must be 3 dimensions of at least 16 voxels")
        out.append((dims[0], dims[1], dims[2]))
    if not out:
        raise InputError("--sizes: give at least one size, e.g. 64,96,128")
    return out


def fit_exponent(voxels, seconds) -> float:
    """Least-squares slope of log(seconds) against log(voxels); NaN with fewer than two distinct sizes.

    Args:
        voxels: voxel count of each finished run.
        seconds: its time.
    """
    v, t = np.asarray(voxels, dtype=np.float64), np.asarray(seconds, dtype=np.float64)
    ok = (v > 0) & (t > 0)
    if len(np.unique(v[ok])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(v[ok]), np.log(t[ok]), 1)[0])


# --- one run in a child process --------------------------------------------------------------------


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and its descendants now (0 once gone)."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_session(pid: int) -> None:
    """SIGKILL to the session ``pid`` leads (it may have ended on its own a moment ago)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _watch(pid: int, deadline: float, max_rss_gb: float):
    """Wait for ``pid`` (polling); kill its session at ``deadline`` or over ``max_rss_gb``.

    Returns ``("ok" | "timeout" | "memory", wait status, rusage)``.
    """
    watch = psutil.Process(pid)
    while True:
        done, code, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return "ok", code, usage
        over = "timeout" if time.perf_counter() > deadline else ""
        over = over or ("memory" if _tree_rss(watch) > max_rss_gb * 2**30 else "")
        if over:
            _kill_session(pid)
            _, code, usage = os.wait4(pid, 0)
            return over, code, usage
        time.sleep(0.1)


def run_child(cmd: list[str], timeout_s: float, max_rss_gb: float, log: Path, env=None) -> dict:
    """Run ``cmd`` in a session of its own; its wall time, CPU time and peak RSS (``os.wait4``).

    It is stopped (the whole session) past ``timeout_s`` or when it and its children hold more than
    ``max_rss_gb`` (so a size that does not fit cannot push other work on the machine out of memory).

    Args:
        cmd: the command.
        timeout_s: wall-clock limit.
        max_rss_gb: resident-memory limit of the process tree.
        log: file for its stdout and stderr.
        env: its environment.
    """
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        status, code, usage = _watch(proc.pid, t0 + timeout_s, max_rss_gb)
    except BaseException:  # interrupted (Ctrl-C): the child and its session go too, not on in the background
        _kill_session(proc.pid)
        os.wait4(proc.pid, 0)
        raise
    if status != "ok":
        status = f"timeout>{timeout_s:g}s" if status == "timeout" else f"memory>{max_rss_gb:g}GB"
    wall = time.perf_counter() - t0
    proc.returncode = code  # reaped here: keep Popen from waiting on it again
    if status == "ok" and code != 0:
        status = f"error (exit {os.waitstatus_to_exitcode(code)})"
    return {
        "status": status,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux: kilobytes
    }


def method_command(method: str, pair: Path, run_dir: Path) -> list[str]:
    """The child's command: ``meddift register`` for dense, this script's worker for a baseline."""
    if method == "dense":
        fixed, moving = str(pair / "fixed.nii"), str(pair / "moving.nii")
        args = ["register", fixed, moving, "--out", str(run_dir / "out"), "--backbone", "mind-ssc", "--no-cache"]
        return [sys.executable, "-m", "MedDIFTLib.cli", *args]
    return [sys.executable, str(Path(__file__).resolve()), "--worker", method, str(pair), str(run_dir / "points.json")]


def mapped_points(method: str, pair: Path, run_dir: Path) -> np.ndarray:
    """The fixed landmarks as the run mapped them into the moving scan (read from what it wrote)."""
    fixed = np.asarray(json.loads((pair / "landmarks.json").read_text())["fixed"])
    if method == "dense":
        import SimpleITK as sitk

        from MedDIFTLib.matching.priors import field_prior

        path = run_dir / "out" / "field.nii.gz"
        return field_prior(sitk.ReadImage(str(path), sitk.sitkVectorFloat64), path)(fixed)
    return np.asarray(json.loads((run_dir / "points.json").read_text()))


def worker(method: str, pair: Path, result: Path) -> int:
    """In the child: one baseline on the pair, its mapped landmarks written to ``result``."""
    from MedDIFTLib.data.points import PointSet
    from MedDIFTLib.evaluation.case import Case
    from MedDIFTLib.evaluation.methods import METHODS

    lm = json.loads((pair / "landmarks.json").read_text())
    fixed, moving = read_volume(pair / "fixed.nii"), read_volume(pair / "moving.nii")
    case = Case("cost-curve", pair.name, fixed, moving, PointSet(np.asarray(lm["fixed"])), PointSet(lm["truth"]))
    result.write_text(json.dumps(METHODS[method]().map_points(case).tolist()))
    return 0


def measure(method: str, pair: Path, run_dir: Path, args) -> dict:
    """One method on one pair: its cost, then its landmark error (untimed, from its outputs)."""
    run_dir.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    row = {"load_1min": os.getloadavg()[0]}
    row.update(
        run_child(
            method_command(method, pair, run_dir), args.timeout_per_run, args.max_memory_gb, run_dir / "log.txt", env
        )
    )
    lm = json.loads((pair / "landmarks.json").read_text())
    truth = np.asarray(lm["truth"])
    row["initial_tre_mm"] = float(np.linalg.norm(np.asarray(lm["fixed"]) - truth, axis=1).mean())
    if row["status"] == "ok":
        err = np.linalg.norm(mapped_points(method, pair, run_dir) - truth, axis=1)
        row["tre_mean_mm"], row["tre_max_mm"] = float(err.mean()), float(err.max())
    elif row["status"].startswith("error"):
        print((run_dir / "log.txt").read_text()[-1500:], file=sys.stderr)
    return row


# --- the report -------------------------------------------------------------------------------------


def exponents(rows: list[dict], key: str = "wall_s") -> dict[str, float]:
    """Per method: :func:`fit_exponent` of ``key`` (wall_s, cpu_s, peak_rss_mb) over its finished runs."""
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        done = [r for r in rows if r["method"] == m and r["status"] == "ok"]
        out[m] = fit_exponent([r["voxels"] for r in done], [r[key] for r in done])
    return out


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table (what is printed and what the README shows)."""
    cols = [c for c in COLUMNS if c != "pair"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c, float("nan"))) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    """Every row, every column of :data:`COLUMNS` (empty where a run did not get that far)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows({c: _cell(r.get(c, float("nan"))) for c in COLUMNS} for r in rows)


def plot(rows: list[dict], title: str, path: Path) -> None:
    """Log-log wall time, CPU time and peak memory against voxels; stopped runs as crosses at their stop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for key, ax, label in zip(
        ("wall_s", "cpu_s", "peak_rss_mb"), axes, ("wall time (s)", "CPU time (s)", "peak RSS (MB)")
    ):
        for m, slope in exponents(rows, key).items():
            mine = [r for r in rows if r["method"] == m]
            ok = [r for r in mine if r["status"] == "ok"]
            name = f"{m} (~ voxels^{slope:.2f})" if np.isfinite(slope) else m
            line = ax.loglog([r["voxels"] for r in ok], [r[key] for r in ok], "o-", label=name)[0]
            stopped = [r for r in mine if r["status"] != "ok" and r.get(key)]
            ax.loglog([r["voxels"] for r in stopped], [r[key] for r in stopped], "x", color=line.get_color(), ms=10)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on log axes
        ax.set_xlabel("voxels of the pair")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def header(pair_desc: str, args) -> str:
    """Machine, threads and pair: what a reader needs to compare the numbers."""
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}
    return (
        f"pairs: {pair_desc}\n"
        f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GB; "
        f"threads: {', '.join(f'{k}={v}' for k, v in threads.items())}; "
        f"load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
        f"limits per run: {args.timeout_per_run:g} s, {args.max_memory_gb:g} GB"
    )


# --- main -------------------------------------------------------------------------------------------


def check_methods(spec: str) -> list[str]:
    """The requested methods, each known and runnable here, before any pair is built."""
    from MedDIFTLib.evaluation.methods import METHODS

    names = [m.strip() for m in spec.split(",") if m.strip()]
    for m in names:
        if m not in METHOD_NAMES:
            raise InputError(f"--methods: unknown {m!r}; choose from {', '.join(METHOD_NAMES)}")
        reason = m != "dense" and METHODS[m].unavailable_reason()
        if reason:
            raise InputError(reason.replace(": skipped, ", ": cannot run, "))
    if not names:
        raise InputError("--methods: name at least one method")
    return names


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", required=True, help="cube edges and full shapes, e.g. 64,96,128,512x512x300")
    p.add_argument("--methods", default=",".join(METHOD_NAMES), help=f"comma list of {', '.join(METHOD_NAMES)}")
    p.add_argument("--timeout-per-run", type=float, default=1800.0, help="seconds before a run is stopped")
    p.add_argument("--max-memory-gb", type=float, default=12.0, help="resident memory before a run is stopped")
    p.add_argument("--pair-source", default="auto", help="auto, phantom, or a CT file")
    p.add_argument("--out", required=True, help="folder for cost_curve.csv, cost_curve.png, cost_curve.md")
    p.add_argument("--keep", action="store_true", help="keep the pairs and the methods' outputs in --out/runs")
    return p.parse_args(argv)


def report(rows: list[dict], head: str, out: Path) -> None:
    """Table, exponents, CSV, Markdown and plot (rewritten after every run: a stopped curve keeps its runs)."""
    wall, cpu, mem = (exponents(rows, k) for k in ("wall_s", "cpu_s", "peak_rss_mb"))
    fit = "\n".join(
        f"- {m}: wall time ~ voxels^{wall[m]:.2f}, CPU time ~ voxels^{cpu[m]:.2f}, peak memory ~ voxels^{mem[m]:.2f}"
        for m in wall
    )
    text = f"{head}\n\n{table(rows)}\n\ngrowth exponents (least squares, finished runs):\n{fit}\n"
    write_csv(rows, out / "cost_curve.csv")
    (out / "cost_curve.md").write_text(text)
    plot(rows, head.splitlines()[0], out / "cost_curve.png")


def main(argv=None) -> int:
    """Build each size's pair, run each method on it in a child process, report after every run."""
    args = parse_args(argv)
    try:
        sizes, methods = parse_sizes(args.sizes), check_methods(args.methods)
        source, desc = pair_source(args.pair_source)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = header(desc, args)
    print(head, flush=True)
    work = Path(tempfile.mkdtemp(prefix="cost-curve-", dir=out if args.keep else None))
    rows: list[dict] = []
    try:
        for shape in sizes:
            label, pair = "x".join(map(str, shape)), work / "x".join(map(str, shape))
            info = prepare_pair(source, shape, pair)
            for m in methods:
                row = {"size": label, "voxels": int(np.prod(shape)), "pair": desc.split(" ")[0], "method": m, **info}
                row.update(measure(m, pair, pair / m, args))
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
                report(rows, head, out)
            if not args.keep:
                shutil.rmtree(pair)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + (out / "cost_curve.md").read_text())
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        raise SystemExit(worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))
    raise SystemExit(main())
