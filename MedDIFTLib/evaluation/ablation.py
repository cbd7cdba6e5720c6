"""Ablations of the MedDIFT pipeline in one run: which choices matter, on the same cases and landmarks.

Each variant changes one thing from the reference (MAISI v1 at t=20, all four
levels, one noise draw, a posterior sample, the default search). Variants that
change only the search reuse the reference features, and every MAISI variant
shares the VAE encoding of a volume, so the whole grid costs little more than
its UNet passes.

Without MAISI weights the MAISI groups cannot say anything about the method:
they are listed as not run, unless ``random_control=True`` runs them on a
randomly initialised MAISI, labelled as a control in every row. The backbone
group always includes that control, since what it shows (the same network
without pretraining) is the point of the comparison.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ..errors import InputError
from ..features.maisi.backbone import LEVEL_NAMES
from ..matching.priors import DEFAULT_RADIUS_MM, DENSE_CHECK_MM
from ..matching.search import MatchOptions
from ..options import BackboneName
from ..session import EngineOptions, MatchSession, SharedCaches
from .methods import MedDIFTMethod

GROUPS = ("levels", "timestep", "ensemble", "latent", "radius", "refinement", "backbone", "dense")
TIMESTEPS = (0, 10, 20, 50, 100, 200)
ENSEMBLES = (1, 2, 4)
RADII = (None, 10.0, 20.0, 40.0)
REFERENCE_RADIUS_MM = DEFAULT_RADIUS_MM  # the evaluation's default local search


@dataclass(frozen=True)
class Variant:
    group: str
    label: str
    engine: EngineOptions
    match: MatchOptions = field(default_factory=lambda: MatchOptions(radius_mm=REFERENCE_RADIUS_MM))
    prior: str | None = None  # "dense": points from the dense registration

    @property
    def name(self) -> str:
        return f"{self.group}: {self.label}"


def _level_subsets(names) -> list:
    """Each level alone, every pair, and all of them."""
    names = list(names)
    subsets = [[n] for n in names] + [list(p) for p in itertools.combinations(names, 2)]
    if len(names) > 2:
        subsets.append(names)
    return subsets


def ablation_variants(
    groups=GROUPS, maisi_weights: bool = False, random_control: bool = False, weights_dir: str | None = None
) -> tuple[list, list]:
    """The variants to run, and a sentence for each group (or part of one) that will not run."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InputError(f"unknown ablation groups {unknown}; choose from {', '.join(GROUPS)}")
    base = EngineOptions(use_cache=False, weights_dir=weights_dir)
    maisi = replace(base, backbone=BackboneName.MAISI.value)
    control = replace(maisi, random_init=True)
    mind = replace(base, backbone=BackboneName.MIND_SSC.value)
    # the MAISI groups run on the real weights, or on the labelled random control when asked
    ref, tag = _maisi_reference(maisi, control, maisi_weights, random_control)
    skipped: list[str] = []
    default = ref or mind  # the search groups run on whatever the pipeline would use
    default_tag = tag if ref is not None else " [MIND-SSC: no MAISI weights]"
    out: list[Variant] = []
    for g in groups:
        maisi_only = g in ("timestep", "ensemble", "latent")
        if ref is None and (maisi_only or g == "levels"):
            skipped.append(
                f"{g} (MAISI): not run, no MAISI weights (meddift weights download; "
                "or --random-control to exercise it on random weights)"
            )
        if g == "levels":
            out += _level_variants(ref, tag, mind)
        elif maisi_only:
            out += _maisi_variants(g, ref, tag)
        elif g == "backbone":
            out += _backbone_variants(maisi, mind, control, maisi_weights, skipped)
        else:
            out += _search_variants(g, default, default_tag)
    return out, skipped


def _maisi_reference(
    maisi: EngineOptions, control: EngineOptions, maisi_weights: bool, random_control: bool
) -> tuple[EngineOptions | None, str]:
    """The engine the MAISI groups run on and the tag their rows carry: the real weights, else the random
    control when asked (labelled in every row), else none (those groups are not run)."""
    if maisi_weights:
        return maisi, ""
    if random_control:
        return control, " [MAISI random-init control]"
    return None, ""


def _level_variants(ref: EngineOptions | None, tag: str, mind: EngineOptions) -> list[Variant]:
    """The level subsets: MAISI's when it runs, MIND-SSC's two scales always."""
    out: list[Variant] = []
    if ref is not None:
        out += [
            Variant("levels", "+".join(s) + tag, ref, MatchOptions(levels=s, radius_mm=REFERENCE_RADIUS_MM))
            for s in _level_subsets(LEVEL_NAMES)
        ]
    out += [
        Variant("levels", "+".join(s) + " [MIND-SSC]", mind, MatchOptions(levels=s, radius_mm=REFERENCE_RADIUS_MM))
        for s in _level_subsets(("mind2", "mind4"))
    ]
    return out


def _maisi_variants(g: str, ref: EngineOptions | None, tag: str) -> list[Variant]:
    """The groups that change a MAISI setting (timestep, ensemble, latent); none without a MAISI engine."""
    if ref is None:
        return []
    if g == "timestep":
        return [Variant(g, f"t={t}{tag}", replace(ref, timestep=t)) for t in TIMESTEPS]
    if g == "ensemble":
        return [Variant(g, f"{k} draw{'s' if k > 1 else ''}{tag}", replace(ref, ensemble=k)) for k in ENSEMBLES]
    return [Variant(g, f"{mode}{tag}", replace(ref, latent=mode)) for mode in ("sample", "mean")]


def _backbone_variants(
    maisi: EngineOptions, mind: EngineOptions, control: EngineOptions, maisi_weights: bool, skipped: list[str]
) -> list[Variant]:
    """Pretrained MAISI (when its weights are there; else a sentence in ``skipped``), MIND-SSC, and the
    random-init control, which always runs: the same network without pretraining is the comparison."""
    out: list[Variant] = []
    if maisi_weights:
        out.append(Variant("backbone", "MAISI (pretrained)", maisi))
    else:
        skipped.append("backbone: MAISI (pretrained) not run, no MAISI weights")
    out += [
        Variant("backbone", "MIND-SSC (weight-free)", mind),
        Variant("backbone", "MAISI random-init (control)", control),
    ]
    return out


def _search_variants(g: str, default: EngineOptions, default_tag: str) -> list[Variant]:
    """The groups that change only the search (radius, refinement, dense), on the pipeline's own engine."""
    if g == "radius":
        return [
            Variant(g, ("global" if r is None else f"{r:g} mm") + default_tag, default, MatchOptions(radius_mm=r))
            for r in RADII
        ]
    if g == "refinement":
        return [
            Variant(g, "on" + default_tag, default),
            Variant(
                g,
                "off (coarse lattice argmax)" + default_tag,
                default,
                MatchOptions(radius_mm=REFERENCE_RADIUS_MM, refine_radius=0, subvoxel=False),
            ),
        ]
    if g == "dense":
        return [
            Variant(g, "dense map" + default_tag, default, MatchOptions(), "dense"),
            Variant(
                g,
                f"dense map + argmax {DENSE_CHECK_MM:g} mm" + default_tag,
                default,
                MatchOptions(radius_mm=DENSE_CHECK_MM),
                "dense",
            ),
        ]
    return []


def ablation_methods(
    variants: Iterable[Variant], session_factory: Callable[[EngineOptions], MatchSession] | None = None
) -> list:
    """One method per variant; variants with the same engine options share one session (features),
    and all sessions share one set of in-memory caches (a volume's VAE encoding serves every timestep)."""
    shared = SharedCaches()
    session_factory = session_factory or (lambda eng: MatchSession(eng, MatchOptions(), shared))
    sessions: dict[str, MatchSession] = {}
    methods = []
    for v in variants:
        key = repr(v.engine)
        if key not in sessions:
            sessions[key] = session_factory(v.engine)
        methods.append(MedDIFTMethod(session=sessions[key].with_matching(v.match), name=v.name, prior=v.prior))
    return methods
