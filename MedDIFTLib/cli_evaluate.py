"""``meddift evaluate``: TRE of MedDIFT and baselines on the same landmarks, with a report."""

from __future__ import annotations

import sys

from .errors import InputError


def run(args) -> int:
    from .evaluation import METHODS, evaluate, phantom_suite, write_report

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise InputError(f"unknown methods {unknown}; available: {', '.join(METHODS)}")
    methods = [METHODS[m]() for m in names]
    cases = phantom_suite(seeds=[int(s) for s in args.seeds.split(",")],
                          amplitudes=[float(a) for a in args.amplitudes.split(",")],
                          noise_hu=[float(n) for n in args.noise.split(",")], n_landmarks=args.landmarks)
    res = evaluate(cases, methods, log=lambda msg: print(msg, file=sys.stderr))
    report = write_report(res, args.out)
    print(report.read_text())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="TRE of MedDIFT and baselines on a generated phantom suite",
                       description="Phantom suite (seeds x breathing amplitudes x noise) with exact ground truth; "
                                   "writes report.md, landmarks.csv and plots.")
    p.add_argument("--out", default="evaluation_output")
    p.add_argument("--methods", default="identity,meddift,sitk-bspline")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--amplitudes", default="15,25", help="diaphragm amplitudes in mm")
    p.add_argument("--noise", default="20", help="noise levels in HU")
    p.add_argument("--landmarks", type=int, default=20)
    p.set_defaults(func=run)
