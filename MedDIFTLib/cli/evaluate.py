"""``meddift evaluate`` (MedDIFT and baselines) and ``meddift ablate`` (MedDIFT variants): TRE on the
same landmarks, with a report."""

from __future__ import annotations

import itertools
import sys

from ..errors import InputError
from ..outputs import FolderSet
from .options import add_case_arguments, add_weights_dir_argument


def dataset_inputs(args) -> dict:
    """The datasets an evaluation reads (no output may go among them)."""
    found = {f"--{k.replace('_', '-')}": getattr(args, k, None) for k in ("learn2reg", "dirlab_4dct", "dirlab_copd")}
    found.update({f"--warped-ct {p}": p for p in getattr(args, "warped_ct", None) or []})
    return found


def _floats(text: str) -> list:
    return [float(v) for v in text.split(",") if v.strip()]


def cases_from_args(args):
    """The phantom suite (unless ``--no-phantom``) followed by each benchmark folder given."""
    from ..evaluation.cases import (
        dirlab_4dct_cases,
        dirlab_copd_cases,
        learn2reg_cases,
        phantom_suite,
        warped_ct_cases,
    )

    sources = []
    if not args.no_phantom:
        sources.append(
            phantom_suite(
                seeds=[int(s) for s in _floats(args.seeds)],
                amplitudes=_floats(args.amplitudes),
                noise_hu=_floats(args.noise),
                n_landmarks=args.landmarks,
                hard=not args.no_hard_cases,
            )
        )
    if args.learn2reg:
        sources.append(learn2reg_cases(args.learn2reg, split=args.learn2reg_split))
    if args.dirlab_4dct:
        sources.append(dirlab_4dct_cases(args.dirlab_4dct))
    if args.dirlab_copd:
        sources.append(dirlab_copd_cases(args.dirlab_copd))
    if getattr(args, "warped_ct", None):
        sources.append(
            warped_ct_cases(
                args.warped_ct,
                variants=[v.strip() for v in args.warped_variants.split(",") if v.strip()],
                amplitude_mm=args.warped_amplitude,
                rotation_deg=args.warped_rotation,
                shift_mm=args.warped_shift,
                noise_hu=args.warped_noise,
                n_landmarks=args.warped_landmarks,
                seed=args.warped_seed,
                wavelength_mm=args.warped_wavelength,
            )
        )
    return itertools.chain(*sources)


def run(args) -> int:
    from ..evaluation.harness import evaluate, write_report
    from ..evaluation.methods import MedDIFTMethod, resolve_methods

    def log(msg):
        print(msg, file=sys.stderr)

    # before any work: nothing foreign overwritten, an earlier report replaced only with --force (as a whole)
    FolderSet.check(args.out, "evaluate", dataset_inputs(args), args.force)
    methods = resolve_methods(args.methods, log=log)
    # one line per distinct note: the MedDIFT methods (points, dense, dense + argmax) share a backbone
    notes = list(
        dict.fromkeys(
            f"MedDIFT pipeline backbone: {m.session.backbone_note}" for m in methods if isinstance(m, MedDIFTMethod)
        )
    )
    for n in notes:
        log(n)
    res = evaluate(cases_from_args(args), methods, log=log)
    if not res.rows:
        raise InputError(
            "nothing to evaluate: no cases (use the phantom suite, --learn2reg, --dirlab-4dct, "
            "--dirlab-copd or --warped-ct)"
        )
    report = write_report(res, args.out, notes=notes, force=args.force, inputs=dataset_inputs(args))
    print(report.read_text())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="TRE of MedDIFT and baselines on a phantom suite and lung benchmarks",
        description="Phantom suite (seeds x breathing amplitudes x noise) with exact ground truth, "
        "plus Learn2Reg and DIR-Lab folders where given; writes report.md, "
        "landmarks.csv and plots.",
    )
    p.add_argument("--out", default="evaluation_output")
    p.add_argument(
        "--methods",
        default="all",
        help="'all' (every method installed here; the rest are listed as skipped) or a comma list of: "
        "identity, meddift, meddift-dense, meddift-dense-argmax, sitk-bspline, elastix, ants-syn, "
        "convexadam, unigradicon",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier report in --out (as a whole)")
    add_case_arguments(p)
    p.set_defaults(func=run)


def run_ablation(args) -> int:
    from ..errors import WeightsError
    from ..evaluation.ablation import GROUPS, ablation_methods, ablation_variants
    from ..evaluation.harness import evaluate, write_report
    from ..features.maisi.weights import find_weights

    def log(msg):
        print(msg, file=sys.stderr)

    # before any work: nothing foreign overwritten, an earlier report replaced only with --force (as a whole)
    FolderSet.check(args.out, "ablate", dataset_inputs(args), args.force)
    try:
        find_weights(args.weights_dir)
        have_weights = True
    except WeightsError:
        have_weights = False
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups != "all" else list(GROUPS)
    variants, skipped = ablation_variants(
        groups, maisi_weights=have_weights, random_control=args.random_control, weights_dir=args.weights_dir
    )
    for msg in skipped:
        log(msg)
    notes = [
        (
            "MAISI weights found: MAISI rows use the pretrained model."
            if have_weights
            else "No MAISI weights here: rows marked [MAISI random-init control] use random weights and say nothing "
            "about the pretrained method; rows marked [MIND-SSC] use the weight-free descriptor."
        )
    ]
    notes += [f"Not run: {m}" for m in skipped]
    res = evaluate(cases_from_args(args), ablation_methods(variants), log=log)
    if not res.rows:
        raise InputError("nothing to evaluate: no cases")
    report = write_report(
        res,
        args.out,
        title="MedDIFT ablations",
        notes=notes,
        force=args.force,
        who="ablate",
        inputs=dataset_inputs(args),
    )
    print(report.read_text())
    return 0


def add_ablation_parser(sub) -> None:
    from ..evaluation.ablation import GROUPS

    p = sub.add_parser(
        "ablate",
        help="MedDIFT ablations (levels, timestep, ensemble, latent, search radius, refinement, backbone) in one run",
        description="Each variant changes one choice from the reference; same cases and landmarks "
        "as `meddift evaluate`. Writes report.md, landmarks.csv and plots.",
    )
    p.add_argument("--out", default="ablation_output")
    p.add_argument("--groups", default="all", help=f"'all' or a comma list of: {', '.join(GROUPS)}")
    p.add_argument(
        "--random-control",
        action="store_true",
        help="without MAISI weights, run the MAISI groups on a randomly initialised MAISI (a labelled control)",
    )
    add_weights_dir_argument(p)
    p.add_argument("--force", action="store_true", help="replace an earlier report in --out (as a whole)")
    add_case_arguments(p)
    p.set_defaults(func=run_ablation, seeds="0")
