"""The plan of a batch run, and the manifests that make a restart skip finished pairs.

A pair counts as done only when its manifest says so *and* the manifest still matches: the
inputs' content digests, the options that change results, and the sha256 of every output file
written. An output that exists but was truncated, edited, or made with other options or from
other scans is redone; existence alone proves nothing after a crash or a copy.

The plan has one extraction per distinct scan (by content digest) that a pending pair needs, and
one matching per pending pair; scans whose pairs are all done are not encoded again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..atomic import write_text_atomic
from ..data.digest import file_sha256
from ..matching.search import MatchOptions
from ..session import EngineOptions
from .cohort import Pair

MANIFEST = "manifest.json"
PAIR_FILES = ("matched.csv", "field.nii.gz", "error.txt", MANIFEST, ".task.field.nii.gz")
"""What a run writes in a pair's folder, and all it ever removes there (never the folder)."""
MANIFEST_VERSION = 1
# engine options that say where things are, not what is computed
_NOT_RESULTS = ("cache_dir", "use_cache", "weights_dir")


def options_fingerprint(engine: EngineOptions, matching: MatchOptions, mode: str) -> dict:
    """Everything that changes a pair's outputs, as plain JSON (stored in every manifest)."""
    eng = {k: v for k, v in asdict(engine).items() if k not in _NOT_RESULTS}
    return {"engine": eng, "matching": asdict(matching), "mode": mode, "meddift": __version__}


def pair_dir(out: Path, pair_id: str) -> Path:
    return Path(out) / "pairs" / pair_id


def manifest_text(folder: Path, pair: Pair, options: dict, outputs: list[str], record: dict) -> tuple[dict, str]:
    """The manifest of the outputs in ``folder`` (their sha256 read there), and its JSON text."""
    manifest = {
        "version": MANIFEST_VERSION,
        "id": pair.id,
        "inputs": dict(pair.digests),
        "options": options,
        "outputs": {name: file_sha256(folder / name) for name in outputs},
        "record": record,
    }
    return manifest, json.dumps(manifest, indent=1, sort_keys=True)


def write_manifest(folder: Path, pair: Pair, options: dict, outputs: list[str], record: dict) -> dict:
    """Written last, after every output is in place: its presence means the outputs were complete."""
    manifest, text = manifest_text(folder, pair, options, outputs, record)
    write_text_atomic(folder / MANIFEST, text)
    return manifest


def completed(folder: Path, pair: Pair, options: dict) -> dict | None:
    """The manifest when the pair's outputs are complete and current, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return None
    if manifest.get("inputs") != dict(pair.digests) or manifest.get("options") != options:
        return None
    outputs = manifest.get("outputs") or {}
    if not outputs:
        return None
    for name, sha in outputs.items():
        path = folder / name
        try:
            if not path.is_file() or file_sha256(path) != sha:
                return None
        except OSError:
            return None
    return manifest


def run_outputs(out: Path, pairs: list) -> dict:
    """Every file a batch run may write or replace, named for messages: the summaries, the digest
    memo, and each pair's files (no folder: a run removes none)."""
    out = Path(out)
    files = {f"--out {name}": out / name for name in ("summary.csv", "summary.md", ".digests.json")}
    for pair in pairs:
        for name in PAIR_FILES:
            files[f"pair {pair.id}'s {name}"] = pair_dir(out, pair.id) / name
    return files


def pair_inputs(pairs: list) -> dict:
    """Every input file of the pairs, named for messages."""
    return {
        f"pair {p.id}'s {role}": getattr(p, role)
        for p in pairs
        for role in ("fixed", "moving", "points", "truth", "prior")
        if getattr(p, role)
    }


@dataclass
class Plan:
    """What a run does: ``scans`` (digest -> path) to extract, ``pending`` pairs to match, and
    ``done`` (pair id -> manifest) for the pairs a previous run completed."""

    pairs: list
    scans: dict = field(default_factory=dict)
    pending: list = field(default_factory=list)
    done: dict = field(default_factory=dict)

    @property
    def distinct_scans(self) -> int:
        return len({p.digest(r) for p in self.pairs for r in ("fixed", "moving")})


def make_plan(pairs: list[Pair], out: Path, options: dict, resume: bool = True) -> Plan:
    plan = Plan(list(pairs))
    for pair in pairs:
        manifest = completed(pair_dir(out, pair.id), pair, options) if resume else None
        if manifest is not None:
            plan.done[pair.id] = manifest
            continue
        plan.pending.append(pair)
        for role in ("fixed", "moving"):
            plan.scans.setdefault(pair.digest(role), getattr(pair, role))
    return plan


__all__ = [
    "Plan",
    "make_plan",
    "options_fingerprint",
    "write_manifest",
    "manifest_text",
    "completed",
    "pair_dir",
    "file_sha256",
    "run_outputs",
    "pair_inputs",
    "MANIFEST",
    "PAIR_FILES",
]
