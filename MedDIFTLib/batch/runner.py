"""Run a cohort on Ray: one extraction task per distinct scan, one matching task per pair that
depends on its two extractions, results written by the driver as they arrive.

Without an address Ray starts in this process (one machine, nothing to set up); with one
(``auto``, ``ray://HOST:PORT``, ``HOST:PORT``) the same plan runs on an existing cluster, whose
nodes need MedDIFT installed and must see the cohort's files, ``OUT`` and the feature cache at
the same paths (shared storage: see :mod:`~MedDIFTLib.batch.tasks` for why pyramids go there).

The driver writes each pair's points and then its manifest (both atomic) when its task returns,
so an interruption at any moment leaves every pair either complete and verifiable or to be
redone; the summary is written at the end of every run, interrupted or not.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.landmark_io import read_points, write_points
from ..data.points import PointSet
from ..errors import CancelledError, InputError
from ..matching.search import MatchOptions
from ..session import EngineOptions
from . import tasks
from .cohort import DigestMemo, read_cohort
from .plan import MANIFEST, clear_pair, make_plan, options_fingerprint, pair_dir, write_manifest
from .summary import BatchCounts, BatchResult, tre_record, write_summary

log = logging.getLogger(__name__)

MATCHED = "matched.csv"
ERROR = "error.txt"
RETRY_EXCEPTIONS = [OSError, MemoryError, ConnectionError]  # transient; a MedDIFTError is returned, not raised


def require_ray():
    """The ``ray`` module, or an InputError saying how to get it."""
    try:
        import ray
    except ImportError as err:
        raise InputError("meddift batch runs on Ray, which is not installed: pip install 'meddift[cluster]' "
                         "(or pip install 'ray>=2.9,<3')") from err
    return ray


def engine_root() -> str:
    """The folder holding the MedDIFTLib the driver imported: local workers import the same code."""
    return str(Path(__file__).resolve().parents[2])


def extraction_resources(engine: EngineOptions, cluster: dict) -> dict:
    """A GPU per extraction when the backbone runs on CUDA, one CPU otherwise. ``auto`` means CUDA
    for MAISI when the cluster has GPUs (MIND-SSC runs on the CPU unless told otherwise)."""
    device = (engine.device or "auto").lower()
    if device.startswith("cuda"):
        return {"num_cpus": 1, "num_gpus": 1}
    if device == "auto" and engine.backbone in ("auto", "maisi") and cluster.get("GPU", 0) > 0:
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1}


def _connect(ray, address: Optional[str], num_cpus: Optional[int]) -> bool:
    """Join or start Ray; True when this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
              configure_logging=True)
    if address:
        try:
            ray.init(address=address, **({} if address.startswith("ray://") else kw))
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise InputError(
                f"cannot join the Ray cluster at {address}: {str(err).strip().splitlines()[-1]}. Is it running "
                "(`ray status` on its head)? A cluster with token authentication (Ray's default) needs "
                "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN) for an explicit address; "
                "ray://HOST:PORT needs the Ray Client port (10001) and pip install 'meddift[cluster]'") from err
    else:
        ray.init(num_cpus=num_cpus, **kw)
    return True


def _write_pair(out: Path, pair, res: dict, options: dict, truth_cache: dict) -> dict:
    """The driver's half of a finished pair: points file, TRE, manifest (last)."""
    folder = pair_dir(out, pair.id)
    (folder / MANIFEST).unlink(missing_ok=True)
    (folder / ERROR).unlink(missing_ok=True)
    pts = np.asarray(res["points"], dtype=float)
    values = {k: np.asarray(v, dtype=float) for k, v in res.get("values", {}).items()}
    write_points(PointSet(pts, res["labels"], values, name=res["name"]), folder / MATCHED)
    record = {"status": "ok", "seconds": res["seconds"], "points": len(pts), "peak_rss_mb": res.get("peak_rss_mb"),
              "backbone": res.get("backbone"), "warnings": res.get("warnings", []), "reencoded": res["reencoded"]}
    if pair.truth:
        if pair.truth not in truth_cache:
            truth_cache[pair.truth] = read_points(pair.truth)
        record.update(tre_record(pts, res["labels"], np.asarray(res["fixed_points"]), truth_cache[pair.truth]))
    outputs = [MATCHED] + [name for name in res.get("outputs", {})]
    write_manifest(folder, pair, options, outputs, record)
    return record


def _write_failure(out: Path, pair, error: str, seconds=None) -> dict:
    folder = pair_dir(out, pair.id)
    clear_pair(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from ..atomic import write_text_atomic

    write_text_atomic(folder / ERROR, error + "\n")
    return {"status": "failed", "error": error, "seconds": seconds}


def _task_error(err: Exception) -> str:
    """A one-line reason for a task that raised after its retries (Ray wraps the cause)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".strip()


def run_batch(cohort_csv, out, engine: Optional[EngineOptions] = None, matching: Optional[MatchOptions] = None,
              mode: str = "points", address: Optional[str] = None, prior: Optional[str] = None,
              retries: int = 2, num_cpus: Optional[int] = None, resume: bool = True,
              progress: Optional[Callable[[BatchCounts], None]] = None,
              cancel: Optional[Callable[[], bool]] = None) -> BatchResult:
    """Run every pair of ``cohort_csv`` not already complete in ``out``; return counts and records.

    ``engine.cache_dir`` is where pyramids go (default ``out/features``). ``retries`` bounds the
    retries of a task whose worker died or that raised a transient error. ``cancel`` is polled
    between results: when it returns True the outstanding tasks are cancelled, the summary is
    written, and CancelledError is raised (the CLI's Ctrl-C does the same).
    """
    if mode not in ("points", "dense"):
        raise InputError(f"unknown mode {mode!r}: points or dense")
    ray = require_ray()
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine = replace(engine) if engine else EngineOptions()  # a copy: the caller's options stay as given
    engine.cache_dir = str(Path(engine.cache_dir or out / "features").resolve())
    engine.use_cache = True  # the cache is how pyramids reach the matching tasks
    matching = matching or MatchOptions()
    pairs = read_cohort(cohort_csv, DigestMemo(out / ".digests.json"))
    options = options_fingerprint(engine, matching, mode)
    plan = make_plan(pairs, out, options, resume=resume)
    counts = BatchCounts(pairs=len(pairs), done_earlier=len(plan.done), scans=plan.distinct_scans,
                         scans_planned=len(plan.scans))
    result = BatchResult(counts)
    for pid, manifest in plan.done.items():
        result.records[pid] = dict(manifest.get("record", {}), status="done earlier")
    eng, mat = asdict(engine), asdict(matching)

    started = _connect(ray, address, num_cpus) if plan.pending else False
    pending = {}
    try:
        if plan.pending:
            runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                p for p in (engine_root(), os.environ.get("PYTHONPATH")) if p)}}
            common = dict(max_retries=int(retries), retry_exceptions=RETRY_EXCEPTIONS, runtime_env=runtime_env)
            extract = ray.remote(tasks.extract_scan).options(
                **common, **extraction_resources(engine, ray.cluster_resources()))
            match = ray.remote(tasks.match_pair).options(**common, num_cpus=1)
            ext = {d: extract.remote(path, d, eng, mat) for d, path in plan.scans.items()}
            for ref in ext.values():
                pending[ref] = ("scan", None)
            for pair in plan.pending:
                ref = match.remote(tasks.pair_payload(pair), ext[pair.digest("fixed")], ext[pair.digest("moving")],
                                   eng, mat, mode, prior, str(pair_dir(out, pair.id)))
                pending[ref] = ("pair", pair)
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
                if kind == "scan":
                    counts.scans_ready += 1
                    counts.scans_encoded += bool(res.get("ok") and res.get("encoded"))
                    counts.scans_failed += not res.get("ok")
                    result.extractions.append(res)
                elif res.get("ok"):
                    result.records[pair.id] = _write_pair(out, pair, res, options, truth_cache)
                    counts.matched += 1
                    counts.reencoded += len(res.get("reencoded", []))
                else:
                    result.records[pair.id] = _write_failure(out, pair, res["error"], res.get("seconds"))
                    counts.failed += 1
            counts.elapsed_s = time.time() - t0
            if progress and ready:
                progress(counts)
    except (CancelledError, KeyboardInterrupt):
        result.interrupted = True
        for ref in pending:
            try:
                ray.cancel(ref, force=False)
            except Exception as err:  # noqa: BLE001 - a finished or lost task: nothing to cancel
                log.debug("cancel: %s", err)
        raise
    finally:
        counts.elapsed_s = time.time() - t0
        backbones = sorted({e.get("note") for e in result.extractions if e.get("ok") and e.get("note")})
        header = {"cohort": str(Path(cohort_csv).resolve()), "mode": mode,
                  "backbone": "; ".join(backbones) or engine.backbone, "feature cache": engine.cache_dir}
        write_summary(out, [p.id for p in pairs], result, header)
        if started:
            ray.shutdown()
    return result


__all__ = ["run_batch", "require_ray", "extraction_resources", "MATCHED", "ERROR"]
