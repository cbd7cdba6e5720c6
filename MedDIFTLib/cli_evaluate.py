"""``meddift evaluate``: TRE of MedDIFT and baselines on the same landmarks, with a report."""

from __future__ import annotations

import sys

from .errors import InputError


def run(args) -> int:
    import itertools

    from .evaluation import METHODS, evaluate, learn2reg_cases, phantom_suite, write_report

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise InputError(f"unknown methods {unknown}; available: {', '.join(METHODS)}")
    methods = [METHODS[m]() for m in names]
    cases = [] if args.no_phantom else phantom_suite(
        seeds=[int(s) for s in args.seeds.split(",")], amplitudes=[float(a) for a in args.amplitudes.split(",")],
        noise_hu=[float(n) for n in args.noise.split(",")], n_landmarks=args.landmarks)
    if args.learn2reg:
        cases = itertools.chain(cases, learn2reg_cases(args.learn2reg, split=args.learn2reg_split))
    res = evaluate(cases, methods, log=lambda msg: print(msg, file=sys.stderr))
    if not res.rows:
        raise InputError("nothing to evaluate: no cases (use the phantom suite or --learn2reg ROOT)")
    report = write_report(res, args.out)
    print(report.read_text())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="TRE of MedDIFT and baselines on a phantom suite and Learn2Reg data",
                       description="Phantom suite (seeds x breathing amplitudes x noise) with exact ground truth; "
                                   "writes report.md, landmarks.csv and plots.")
    p.add_argument("--out", default="evaluation_output")
    p.add_argument("--methods", default="identity,meddift,sitk-bspline")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--amplitudes", default="15,25", help="diaphragm amplitudes in mm")
    p.add_argument("--noise", default="20", help="noise levels in HU")
    p.add_argument("--landmarks", type=int, default=20)
    p.add_argument("--no-phantom", action="store_true", help="skip the phantom suite")
    p.add_argument("--learn2reg", metavar="ROOT", help="a Learn2Reg LungCT folder (imagesTr/, keypointsTr/)")
    p.add_argument("--learn2reg-split", default="Tr", choices=["Tr", "Ts"])
    p.set_defaults(func=run)
