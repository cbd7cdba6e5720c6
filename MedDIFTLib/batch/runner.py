"""Run a cohort on Ray: one extraction task per distinct scan, one matching task per pair that
depends on its two extractions, results written by the driver as they arrive.

Without an address Ray starts in this process (one machine, nothing to set up); with one
(``auto``, ``ray://HOST:PORT``, ``HOST:PORT``) the same plan runs on an existing cluster, whose
nodes need MedDIFT installed and must see the cohort's files, ``OUT`` and the feature cache at
the same paths (shared storage: see :mod:`~MedDIFTLib.batch.tasks` for why pyramids go there).

The driver writes each pair's files (points, field, manifest) as one set when its task returns
(:class:`~MedDIFTLib.outputs.OutputSet`), so an interruption at any moment leaves every pair
either complete and verifiable or as it was; a failed pair's set is its ``error.txt``. Before
any work every file the run may write is checked against every input of the cohort (the cohort
CSV included): a run never writes over, and never removes, what it did not create. The summary
is written at the end of every run, interrupted or not.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.landmark_io import read_points, write_points
from ..data.points import PointSet
from ..errors import CancelledError, InputError
from ..features import backbone_class
from ..matching.search import MatchOptions
from ..outputs import OutputSet, refuse_input_overlap
from ..session import EngineOptions
from . import tasks
from .cohort import DigestMemo, read_cohort
from .plan import (
    MANIFEST,
    PAIR_FILES,
    Plan,
    completed,
    make_plan,
    manifest_text,
    options_fingerprint,
    pair_dir,
    pair_inputs,
    run_outputs,
)
from .summary import BatchCounts, BatchResult, tre_record, write_summary
from .tasks import FIELD, TASK_FIELD

log = logging.getLogger(__name__)

MATCHED = "matched.csv"
ERROR = "error.txt"
RETRY_EXCEPTIONS = [OSError, MemoryError, ConnectionError]  # transient; a MedDIFTError is returned, not raised


def require_ray():
    """The ``ray`` module, or an InputError saying how to get it."""
    try:
        import ray
    except ImportError as err:
        raise InputError(
            "meddift batch runs on Ray, which is not installed: pip install 'meddift[cluster]' "
            "(or pip install 'ray>=2.9,<3')"
        ) from err
    return ray


def engine_root() -> str:
    """The folder holding the MedDIFTLib the driver imported: local workers import the same code."""
    return str(Path(__file__).resolve().parents[2])


def extraction_resources(engine: EngineOptions, cluster: dict) -> dict:
    """A GPU per extraction when the backbone runs on CUDA, one CPU otherwise. ``auto`` means CUDA
    when the cluster has GPUs and the backbone says it gains from one (``Backbone.wants_accelerator``)."""
    device = (engine.device or "auto").lower()
    if device.startswith("cuda"):
        return {"num_cpus": 1, "num_gpus": 1}
    if device == "auto" and cluster.get("GPU", 0) > 0 and backbone_class(engine.backbone).wants_accelerator:
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1}


def _connect(ray, address: str | None, num_cpus: int | None) -> bool:
    """Join or start Ray; True when this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        try:
            ray.init(address=address, **({} if address.startswith("ray://") else kw))
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise InputError(
                f"cannot join the Ray cluster at {address}: {str(err).strip().splitlines()[-1]}. Is it running "
                "(`ray status` on its head)? A cluster with token authentication (Ray's default) needs "
                "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN) for an explicit address; "
                "ray://HOST:PORT needs the Ray Client port (10001) and pip install 'meddift[cluster]'"
            ) from err
    else:
        ray.init(num_cpus=num_cpus, **kw)
    return True


def _write_pair(run: _Run, pair, res: dict, truth_cache: dict) -> dict:
    """The driver's half of a finished pair: points, the task's field, TRE, manifest, put in place as one set."""
    folder = pair_dir(run.out, pair.id)
    dense = bool(res.get("outputs"))
    targets = {"points": folder / MATCHED, "manifest": folder / MANIFEST}
    if dense:
        targets["field"] = folder / FIELD
    members = tuple(folder / n for n in PAIR_FILES if n not in (MATCHED, MANIFEST))
    pts = np.asarray(res["points"], dtype=float)
    values = {k: np.asarray(v, dtype=float) for k, v in res.get("values", {}).items()}
    record = {
        "status": "ok",
        "seconds": res["seconds"],
        "points": len(pts),
        "peak_rss_mb": res.get("peak_rss_mb"),
        "backbone": res.get("backbone"),
        "warnings": res.get("warnings", []),
        "reencoded": res["reencoded"],
    }
    if pair.truth:
        if pair.truth not in truth_cache:
            truth_cache[pair.truth] = read_points(pair.truth)
        record.update(tre_record(pts, res["labels"], np.asarray(res["fixed_points"]), truth_cache[pair.truth]))
    with OutputSet(targets, pair_inputs([pair]), force=True, members=members) as outputs:
        write_points(PointSet(pts, res["labels"], values, name=res["name"]), outputs.path("points"))
        if dense:
            os.replace(folder / TASK_FIELD, outputs.path("field"))
        stage = outputs.path("points").parent
        _, text = manifest_text(stage, pair, run.options, [MATCHED] + ([FIELD] if dense else []), record)
        outputs.path("manifest").write_text(text, encoding="utf-8")
        outputs.commit()
    return record


def _write_failure(run: _Run, pair, error: str, seconds=None) -> dict:
    """A failed pair's set is its reason alone: any earlier files of the pair's set go with it."""
    folder = pair_dir(run.out, pair.id)
    members = tuple(folder / n for n in PAIR_FILES if n != ERROR)
    with OutputSet({"error": folder / ERROR}, pair_inputs([pair]), force=True, members=members) as outputs:
        outputs.path("error").write_text(error + "\n", encoding="utf-8")
        outputs.commit()
    return {"status": "failed", "error": error, "seconds": seconds}


def _task_error(err: Exception) -> str:
    """A one-line reason for a task that raised after its retries (Ray wraps the cause)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".strip()


@dataclass
class _Run:
    """One run's settings and state, shared by its stages."""

    cohort: Path
    out: Path
    engine: EngineOptions
    matching: MatchOptions
    mode: str
    prior: str | None
    pairs: list
    options: dict
    plan: Plan
    result: BatchResult
    t0: float = field(default_factory=time.time)


def _prepare(
    cohort_csv,
    out,
    engine: EngineOptions | None,
    matching: MatchOptions | None,
    mode: str,
    prior: str | None,
    resume: bool,
) -> _Run:
    """Read and check the cohort, check every output against every input, plan; nothing computed yet."""
    out, cohort_csv = Path(out), Path(cohort_csv)
    refuse_input_overlap(run_outputs(out, []), {"the cohort file": cohort_csv})  # before the memo is written
    out.mkdir(parents=True, exist_ok=True)
    engine = replace(engine) if engine else EngineOptions()  # a copy: the caller's options stay as given
    engine.cache_dir = str(Path(engine.cache_dir or out / "features").resolve())
    engine.use_cache = True  # the cache is how pyramids reach the matching tasks
    matching = matching or MatchOptions()
    pairs = read_cohort(cohort_csv, DigestMemo(out / ".digests.json"))
    refuse_input_overlap(run_outputs(out, pairs), {"the cohort file": cohort_csv, **pair_inputs(pairs)})
    options = options_fingerprint(engine, matching, mode)
    plan = make_plan(pairs, out, options, resume=resume)
    counts = BatchCounts(
        pairs=len(pairs), done_earlier=len(plan.done), scans=plan.distinct_scans, scans_planned=len(plan.scans)
    )
    result = BatchResult(counts)
    for pid, manifest in plan.done.items():
        result.records[pid] = dict(manifest.get("record", {}), status="done earlier")
    return _Run(cohort_csv, out, engine, matching, mode, prior, pairs, options, plan, result)


def _submit(ray, run: _Run, retries: int, pending: dict) -> None:
    """One extraction task per distinct scan, one matching task per pending pair (into ``pending``)."""
    runtime_env = {
        "env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (engine_root(), os.environ.get("PYTHONPATH")) if p)}
    }
    common = dict(max_retries=int(retries), retry_exceptions=RETRY_EXCEPTIONS, runtime_env=runtime_env)
    extract = ray.remote(tasks.extract_scan).options(
        **common, **extraction_resources(run.engine, ray.cluster_resources())
    )
    match = ray.remote(tasks.match_pair).options(**common, num_cpus=1)
    eng, mat = asdict(run.engine), asdict(run.matching)
    ext = {d: extract.remote(path, d, eng, mat) for d, path in run.plan.scans.items()}
    for ref in ext.values():
        pending[ref] = ("scan", None)
    for pair in run.plan.pending:
        ref = match.remote(
            tasks.pair_payload(pair),
            ext[pair.digest("fixed")],
            ext[pair.digest("moving")],
            eng,
            mat,
            run.mode,
            run.prior,
            str(pair_dir(run.out, pair.id)),
        )
        pending[ref] = ("pair", pair)


def _record(run: _Run, kind: str, pair, res: dict, truth_cache: dict) -> None:
    """Count a finished task and write a finished pair's files."""
    counts = run.result.counts
    if kind == "scan":
        counts.scans_ready += 1
        counts.scans_encoded += bool(res.get("ok") and res.get("encoded"))
        counts.scans_failed += not res.get("ok")
        run.result.extractions.append(res)
    elif res.get("ok"):
        run.result.records[pair.id] = _write_pair(run, pair, res, truth_cache)
        counts.matched += 1
        counts.reencoded += len(res.get("reencoded", []))
    else:
        run.result.records[pair.id] = _write_failure(run, pair, res["error"], res.get("seconds"))
        counts.failed += 1


def _record_placed(run: _Run) -> None:
    """After an interruption: a pair whose set was put in place just before it, but not yet counted
    (the interruption waits for the put-in-place, then arrives before the count), is counted from its
    manifest, so that the summary says what the pair folders hold."""
    for pair in run.pairs:
        if pair.id in run.result.records:
            continue
        manifest = completed(pair_dir(run.out, pair.id), pair, run.options)
        if manifest is not None:
            run.result.records[pair.id] = dict(manifest.get("record", {}), status="ok")
            run.result.counts.matched += 1


def _collect(ray, run: _Run, pending: dict, progress, cancel) -> None:
    """Wait for the tasks, recording each as it finishes; ``cancel`` polled between results."""
    truth_cache: dict = {}
    while pending:
        if cancel is not None and cancel():
            raise CancelledError("batch cancelled; finished pairs are kept, run again to do the rest")
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in ready:
            kind, pair = pending.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as err:  # a task that still failed after its retries
                res = {"ok": False, "error": _task_error(err)}
            _record(run, kind, pair, res, truth_cache)
        run.result.counts.elapsed_s = time.time() - run.t0
        if progress and ready:
            progress(run.result.counts)


def _cancel_all(ray, pending: dict) -> None:
    for ref in pending:
        try:
            ray.cancel(ref, force=False)
        except Exception as err:  # noqa: BLE001 - a finished or lost task: nothing to cancel
            log.debug("cancel: %s", err)


def _summarise(run: _Run) -> None:
    result = run.result
    result.counts.elapsed_s = time.time() - run.t0
    backbones = sorted({e.get("note") for e in result.extractions if e.get("ok") and e.get("note")})
    header = {
        "cohort": str(run.cohort.resolve()),
        "mode": run.mode,
        "backbone": "; ".join(backbones) or run.engine.backbone,
        "feature cache": run.engine.cache_dir,
    }
    write_summary(run.out, [p.id for p in run.pairs], result, header)


def run_batch(
    cohort_csv,
    out,
    engine: EngineOptions | None = None,
    matching: MatchOptions | None = None,
    mode: str = "dense",
    address: str | None = None,
    prior: str | None = None,
    retries: int = 2,
    num_cpus: int | None = None,
    resume: bool = True,
    progress: Callable[[BatchCounts], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> BatchResult:
    """Run every pair of ``cohort_csv`` not already complete in ``out``; return counts and records.

    ``engine.cache_dir`` is where pyramids go (default ``out/features``). ``retries`` bounds the
    retries of a task whose worker died or that raised a transient error. ``cancel`` is polled
    between results: when it returns True the outstanding tasks are cancelled, the summary is
    written, and CancelledError is raised (the CLI's Ctrl-C does the same).
    """
    if mode not in ("points", "dense"):
        raise InputError(f"unknown mode {mode!r}: points or dense")
    ray = require_ray()
    run = _prepare(cohort_csv, out, engine, matching, mode, prior, resume)
    started = _connect(ray, address, num_cpus) if run.plan.pending else False
    pending: dict = {}
    try:
        if run.plan.pending:
            _submit(ray, run, retries, pending)
        _collect(ray, run, pending, progress, cancel)
    except (CancelledError, KeyboardInterrupt):
        run.result.interrupted = True
        _cancel_all(ray, pending)
        _record_placed(run)
        raise
    finally:
        _summarise(run)
        if started:
            ray.shutdown()
    return run.result


__all__ = ["run_batch", "require_ray", "extraction_resources", "MATCHED", "ERROR", "FIELD"]
