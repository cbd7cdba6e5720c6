"""RECIST 1.1 response assessment (Eisenhauer et al., Eur J Cancer 45 (2009) 228-247) from accepted lengths.

What counts is the length the reader accepted at each time point (longest diameter; short axis for a
lymph node), never a proposal. The rules, as the guideline states them:

* the target sum is the sum of those lengths;
* complete response (CR): every non-nodal target has disappeared (0 mm) and every nodal target is under
  10 mm short axis (a normal node), so the sum need not be 0;
* partial response (PR): the sum is at least 30% below the baseline sum;
* progression (PD): the sum is at least 20% above the smallest sum on study before this time point (the
  nadir, baseline included) and at least 5 mm above it in absolute terms; or a new lesion; or
  unequivocal progression of the non-target lesions;
* stable disease (SD): neither;
* a target lesion not measured at a time point makes the target response not evaluable (NE), unless the
  lesions that were measured already give progression (a missing lesion can only add to the sum);
* the overall response combines target, non-target and new lesions (the guideline's Tables 1 and 2).

Where the rules cannot decide, the result says "not evaluable" and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ..errors import InputError

PR_DECREASE = 0.30  # from the baseline sum
PD_INCREASE = 0.20  # from the nadir ...
PD_ABSOLUTE_MM = 5.0  # ... and at least this much in millimetres
NORMAL_NODE_MM = 10.0  # a lymph node under this short axis is normal
MEASURABLE_MM = 10.0  # a non-nodal lesion's longest diameter at baseline, to be a target
MEASURABLE_NODE_MM = 15.0  # a lymph node's short axis at baseline, to be a target
MAX_TARGETS, MAX_TARGETS_PER_ORGAN = 5, 2
# Lengths are read to 0.1 mm; a threshold such as 0.7 x 60 mm may land a hair off its decimal value in
# binary floating point, so a sum within this of a threshold counts as on it (the guideline's "at least").
EPS_MM = 1e-6


class Kind(str, Enum):
    TARGET = "target"
    NON_TARGET = "non-target"


class Response(str, Enum):
    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NE = "NE"
    NON_CR_NON_PD = "non-CR/non-PD"  # non-target lesions present, not progressing
    BASELINE = "baseline"


class NewLesions(str, Enum):
    NO = "no"
    YES = "yes"
    EQUIVOCAL = "equivocal"  # not progression yet; if confirmed later, progression dates from here


@dataclass(frozen=True)
class Lesion:
    """One lesion the reader follows. ``organ`` and ``location`` are typed by the reader."""

    label: str
    kind: Kind = Kind.TARGET
    organ: str = ""
    location: str = ""
    lymph_node: bool = False


@dataclass(frozen=True)
class TimePoint:
    """One study. ``non_target``: the reader's assessment of the non-target lesions (CR, non-CR/non-PD,
    PD or NE); ``None`` where there are none, or at baseline."""

    name: str
    new_lesions: NewLesions = NewLesions.NO
    non_target: Response | None = None


@dataclass
class TimePointResult:
    name: str
    sum_mm: float | None  # the sum of the measured targets (None: none measured)
    missing: list[str]  # targets without an accepted length here
    change_from_baseline: float | None  # fraction, -0.3 = 30% smaller
    nadir_mm: float | None  # the smallest sum before this time point
    change_from_nadir: float | None
    target: Response
    non_target: Response | None
    new_lesions: NewLesions
    overall: Response
    reasons: list[str] = field(default_factory=list)


@dataclass
class Worksheet:
    lesions: list[Lesion]
    timepoints: list[TimePoint]
    lengths: dict[tuple[str, str], float | None]
    results: list[TimePointResult]
    warnings: list[str]

    def length(self, label: str, timepoint: str) -> float | None:
        return self.lengths.get((label, timepoint))


def assess(
    lesions: Sequence[Lesion], timepoints: Sequence[TimePoint], lengths: Mapping[tuple[str, str], float | None]
) -> Worksheet:
    """The response table of a follow-up.

    Args:
        lesions: every lesion followed, targets and non-targets (labels unique).
        timepoints: the studies in time order; the first is the baseline.
        lengths: ``(lesion label, time point name) -> accepted length in mm`` (0 for a lesion that has
            disappeared; absent or None: not measured).
    """
    _check(lesions, timepoints, lengths)
    targets = [les for les in lesions if les.kind == Kind.TARGET]
    warnings = _baseline_warnings(targets, timepoints[0].name, lengths)
    results: list[TimePointResult] = []
    for tp in timepoints:
        results.append(_assess_one(tp, targets, lengths, results))
    return Worksheet(list(lesions), list(timepoints), dict(lengths), results, warnings)


def _check(lesions, timepoints, lengths) -> None:
    if not timepoints:
        raise InputError("a follow-up needs at least the baseline time point")
    labels = [les.label for les in lesions]
    if len(set(labels)) != len(labels):
        raise InputError(f"lesion labels must be unique: {sorted({x for x in labels if labels.count(x) > 1})}")
    names = [tp.name for tp in timepoints]
    if len(set(names)) != len(names):
        raise InputError(f"time point names must be unique: {names}")
    for (label, tp), value in lengths.items():
        if label not in labels or tp not in names:
            raise InputError(f"a length is given for {label!r} at {tp!r}, which is not a known lesion and time point")
        if value is not None and not (value >= 0.0 and value < float("inf")):
            raise InputError(f"the length of {label!r} at {tp!r} is {value}: a length is 0 mm or more")


def _baseline_warnings(targets, baseline: str, lengths) -> list[str]:
    out = []
    if len(targets) > MAX_TARGETS:
        out.append(f"{len(targets)} target lesions: RECIST 1.1 allows at most {MAX_TARGETS}")
    organs: dict[str, int] = {}
    for les in targets:
        if les.organ:
            organs[les.organ.lower()] = organs.get(les.organ.lower(), 0) + 1
        size = lengths.get((les.label, baseline))
        least = MEASURABLE_NODE_MM if les.lymph_node else MEASURABLE_MM
        if size is None:
            out.append(f"target {les.label} has no baseline length: its changes cannot be assessed")
        elif size < least:
            what = "short axis" if les.lymph_node else "longest diameter"
            out.append(
                f"target {les.label}: baseline {what} {size:.1f} mm is under {least:.0f} mm, not measurable "
                "per RECIST 1.1 (record it as a non-target lesion)"
            )
    out += [
        f"{n} target lesions in {organ}: RECIST 1.1 allows at most {MAX_TARGETS_PER_ORGAN} per organ"
        for organ, n in organs.items()
        if n > MAX_TARGETS_PER_ORGAN
    ]
    return out


def _assess_one(tp: TimePoint, targets, lengths, earlier: list[TimePointResult]) -> TimePointResult:
    measured = {les.label: lengths.get((les.label, tp.name)) for les in targets}
    missing = [label for label, v in measured.items() if v is None]
    known = [v for v in measured.values() if v is not None]
    total = float(sum(known)) if known else None
    reasons: list[str] = []
    if not earlier:  # the baseline
        return TimePointResult(
            tp.name,
            total,
            missing,
            None,
            None,
            None,
            Response.BASELINE,
            None,
            tp.new_lesions,
            Response.BASELINE,
            reasons,
        )
    base = earlier[0].sum_mm if not earlier[0].missing else None
    sums = [r.sum_mm for r in earlier if r.sum_mm is not None and not r.missing]
    nadir = min(sums) if sums else None
    change_b = _change(total, base) if not missing else None
    change_n = _change(total, nadir)
    target = _target_response(targets, measured, missing, total, base, nadir, reasons) if targets else None
    overall = _overall(target, tp, reasons)
    return TimePointResult(
        tp.name,
        total,
        missing,
        change_b,
        nadir,
        change_n,
        target or Response.NE,
        tp.non_target,
        tp.new_lesions,
        overall,
        reasons,
    )


def _change(total: float | None, ref: float | None) -> float | None:
    if total is None or ref is None or ref <= 0.0:
        return None
    return (total - ref) / ref


def _progressed(total: float | None, nadir: float | None) -> bool:
    if total is None or nadir is None:
        return False
    return total - nadir >= PD_ABSOLUTE_MM - EPS_MM and total >= (1.0 + PD_INCREASE) * nadir - EPS_MM


def _target_response(targets, measured, missing, total, base, nadir, reasons) -> Response:
    if nadir is None or base is None:
        reasons.append("target response not evaluable: the baseline sum is incomplete")
        return Response.PD if _progressed(total, nadir) else Response.NE
    if _progressed(total, nadir):
        reasons.append(
            f"target sum {total:.1f} mm is >= {PD_INCREASE:.0%} and >= {PD_ABSOLUTE_MM:.0f} mm above the "
            f"nadir {nadir:.1f} mm" + (" even without the unmeasured targets" if missing else "")
        )
        return Response.PD
    if missing:
        reasons.append(f"target response not evaluable: {', '.join(missing)} not measured at this time point")
        return Response.NE
    if all((v < NORMAL_NODE_MM) if les.lymph_node else (v == 0.0) for les in targets for v in [measured[les.label]]):
        return Response.CR
    if total <= (1.0 - PR_DECREASE) * base + EPS_MM:
        return Response.PR
    return Response.SD


def _overall(target: Response | None, tp: TimePoint, reasons: list[str]) -> Response:
    """The guideline's Table 1 (with target lesions) and Table 2 (non-target lesions only)."""
    nt = tp.non_target
    if tp.new_lesions == NewLesions.YES:
        reasons.append("new lesion(s)")
        return Response.PD
    if tp.new_lesions == NewLesions.EQUIVOCAL:
        reasons.append("equivocal new lesion: if confirmed at the next study, progression dates from this one")
    if nt == Response.PD:
        reasons.append("unequivocal progression of the non-target lesions")
        return Response.PD
    if target is None:  # Table 2
        if nt is None:
            reasons.append("no target and no non-target assessment")
            return Response.NE
        return nt
    if target == Response.PD:
        return Response.PD
    if target == Response.NE:
        return Response.NE
    if target == Response.CR:
        return Response.CR if nt in (None, Response.CR) else Response.PR
    return target  # PR or SD, with non-target non-PD or NE
