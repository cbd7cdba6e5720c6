"""The lesion follow-up worksheet of a tracking session: measurements carried forward, accepted by the reader.

The reader measures a lesion once, on the baseline, with a line markup (longest diameter; short axis for
a lymph node). For each follow-up MedDIFT places a *proposed* line on the matched lesion: the source
line's two end points carried through the pair's dense field, or moved by the point match's translation
where there is no field. The reader adjusts it and accepts; only the accepted length counts (RECIST 1.1
reads what the reader measured, never what a program proposed).

Everything lives in MRML, so a saved ``.mrb`` keeps the worksheet:

- the session node references each lesion's baseline line (role ``MedDIFTWorksheetLesion``, in order);
- a baseline line carries the lesion's description as attributes (``MedDIFT.worksheet.*``: label, the
  tracked landmark it follows, kind, organ, lymph node) and references its follow-up lines (role
  ``MedDIFTFollowUpLine``, one per follow-up in time order; the baseline line itself holds a place not
  yet proposed);
- a follow-up line carries its review status, the accepted length and where the proposal came from;
- the reader's per-study assessment (new lesions, non-target response) is a session parameter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from MedDIFTLib.errors import InputError
from MedDIFTLib.followup.recist import Kind, Lesion, NewLesions, Response, TimePoint, Worksheet, assess

from .densefield import field_lookup
from .scene import pointset_from_markups
from .session import TrackingSession

LESION_ROLE = "MedDIFTWorksheetLesion"
FOLLOW_UP_ROLE = "MedDIFTFollowUpLine"
A = "MedDIFT.worksheet."  # attribute prefix
NOT_REVIEWED = "not yet reviewed"
ADJUSTED = "adjusted, not accepted"
ACCEPTED = "accepted"
FROM_FIELD = "carried through the dense field"
FROM_TRANSLATION = "moved by the point match"
ACCEPTED_COLOUR, PROPOSED_COLOUR = (1.0, 0.84, 0.0), (0.0, 0.78, 1.0)  # yellow: counts; cyan: not yet
MOVED_TOL_MM = 1e-3  # a proposal's end point further than this from where it was placed: the reader moved it
NON_TARGET_CHOICES = {r.value: r for r in (Response.CR, Response.NON_CR_NON_PD, Response.PD, Response.NE)}

FieldFor = Callable[[object, object], "tuple | None"]
"""(fixed volume node, moving volume node) -> the pair's dense field (displacement, IJK-to-RAS) or None."""


def line_points(line) -> np.ndarray:
    """The line's two end points, world RAS mm (a line without both is refused in the reader's terms)."""
    if line is None or not line.IsA("vtkMRMLMarkupsLineNode"):
        raise InputError("a line markup is needed (Markups: line, from end to end of the lesion)")
    if line.GetNumberOfDefinedControlPoints() != 2:
        raise InputError(f"line {line.GetName()!r} needs both end points placed")
    return np.array([line.GetNthControlPointPositionWorld(i) for i in range(2)], dtype=np.float64)


def line_length(line) -> float:
    a, b = line_points(line)
    return float(np.linalg.norm(b - a))


# --- lesions --------------------------------------------------------------------------------------


def lesions(session: TrackingSession) -> list:
    """The baseline lines of the session's lesions, in the order they were added."""
    node = session.node
    refs = (node.GetNthNodeReference(LESION_ROLE, i) for i in range(node.GetNumberOfNodeReferences(LESION_ROLE)))
    return [line for line in refs if line is not None]  # a line the reader deleted is no longer a lesion


def label_of(line) -> str:
    return line.GetAttribute(A + "label") or line.GetName()


def add_lesion(
    session: TrackingSession,
    line,
    kind: str = Kind.TARGET.value,
    organ: str = "",
    lymph_node: bool = False,
    landmark: str | None = None,
) -> str:
    """Add the reader's baseline measurement of a lesion; returns the lesion's label.

    The lesion follows the session's tracked landmark nearest the line's middle (or ``landmark``), whose
    match in each follow-up says where the lesion went; that landmark's label is the lesion's.

    Args:
        session: the tracking session (baseline + follow-ups).
        line: a line markup drawn on the baseline across the lesion.
        kind: ``target`` or ``non-target``.
        organ: typed by the reader.
        lymph_node: the line is a lymph node's short axis.
        landmark: the label of the tracked landmark on this lesion (default: the nearest one).
    """
    ends = line_points(line)
    if any(line is other for other in lesions(session)):
        raise InputError(f"line {line.GetName()!r} is already a lesion of this worksheet")
    label = landmark or _nearest_landmark(session, ends)
    if label in [label_of(other) for other in lesions(session)]:
        raise InputError(f"landmark {label!r} already has a lesion in this worksheet; measure each lesion once")
    line.SetAttribute(A + "label", label)
    set_lesion_info(line, kind=kind, organ=organ, lymph_node=lymph_node)
    session.node.AddNodeReferenceID(LESION_ROLE, line.GetID())
    return label


def _nearest_landmark(session: TrackingSession, ends: np.ndarray) -> str:
    base = pointset_from_markups(session.baseline_points)
    assert base.labels is not None  # PointSet makes a list
    if not np.any(base.defined):
        raise InputError("the session's baseline has no landmarks: place one on the lesion and track first")
    middle = ends.mean(axis=0)
    dist = np.where(base.defined, np.linalg.norm(base.points - middle, axis=1), np.inf)
    i = int(np.argmin(dist))
    reach = max(20.0, float(np.linalg.norm(ends[1] - ends[0])))  # a landmark on the lesion, not across the chest
    if dist[i] > reach:
        raise InputError(
            f"no tracked landmark within {reach:.0f} mm of this line (nearest: {base.labels[i]} at {dist[i]:.0f} mm); "
            "place a landmark on the lesion and track it first"
        )
    return base.labels[i]


def set_lesion_info(line, kind: str | None = None, organ: str | None = None, lymph_node: bool | None = None) -> None:
    """What the reader says about a lesion (None: unchanged).

    Args:
        line: the lesion's baseline line.
        kind: ``target`` or ``non-target``.
        organ: typed by the reader.
        lymph_node: whether it is a lymph node (its short axis is measured).
    """
    if kind is not None:
        if kind not in (k.value for k in Kind):
            raise InputError(f"lesion kind {kind!r}: choose target or non-target")
        line.SetAttribute(A + "kind", kind)
    if organ is not None:
        line.SetAttribute(A + "organ", organ.strip())
    if lymph_node is not None:
        line.SetAttribute(A + "lymphNode", "yes" if lymph_node else "no")


def lesion_description(line) -> Lesion:
    """The lesion as the response rules see it (location: the baseline line's middle, RAS mm)."""
    middle = line_points(line).mean(axis=0)
    return Lesion(
        label_of(line),
        Kind(line.GetAttribute(A + "kind") or Kind.TARGET.value),
        line.GetAttribute(A + "organ") or "",
        "RAS " + ", ".join(f"{c:.1f}" for c in middle),
        line.GetAttribute(A + "lymphNode") == "yes",
    )


# --- follow-up lines --------------------------------------------------------------------------------


def follow_up_line(lesion_line, t: int):
    """The lesion's line at follow-up ``t`` (1-based), None before one was proposed."""
    if t < 1 or t > lesion_line.GetNumberOfNodeReferences(FOLLOW_UP_ROLE):
        return None
    node = lesion_line.GetNthNodeReference(FOLLOW_UP_ROLE, t - 1)
    return None if node is None or node is lesion_line else node


def status(line) -> str:
    """A follow-up line's review: not yet reviewed, adjusted (not accepted) or accepted."""
    said = line.GetAttribute(A + "status") or NOT_REVIEWED
    if said == ACCEPTED:
        return ACCEPTED
    placed = line.GetAttribute(A + "proposed")
    if not placed or said == ADJUSTED:
        return ADJUSTED  # reopened by the reader
    if line.GetNumberOfDefinedControlPoints() != 2:
        return ADJUSTED  # an end point removed to be placed again
    where = np.array([float(c) for c in placed.split()]).reshape(2, 3)
    moved = np.max(np.linalg.norm(line_points(line) - where, axis=1)) > MOVED_TOL_MM
    return ADJUSTED if moved else NOT_REVIEWED


def _colour(line, rgb) -> None:
    display = line.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*rgb)


def accept_line(line) -> float:
    """The reader accepts the line as it is now: its length counts from now on; the line is locked (and
    drawn yellow). Returns the accepted length (mm)."""
    length = line_length(line)
    line.SetLocked(True)
    _colour(line, ACCEPTED_COLOUR)
    line.SetAttribute(A + "status", ACCEPTED)
    line.SetAttribute(A + "acceptedLength", repr(length))
    return length


def reopen_line(line) -> None:
    """The reader wants to measure again: unlocked, and its length no longer counts until accepted."""
    line.SetLocked(False)
    _colour(line, PROPOSED_COLOUR)
    line.SetAttribute(A + "status", ADJUSTED)
    line.RemoveAttribute(A + "acceptedLength")
    line.RemoveAttribute(A + "proposed")


def accepted_length(lesion_line, t: int) -> float | None:
    """The length that counts at time point ``t`` (0: the baseline, the reader's own line; a follow-up:
    only an accepted line's accepted length, never a proposal's)."""
    if t == 0:
        return line_length(lesion_line)
    line = follow_up_line(lesion_line, t)
    if line is None or line.GetAttribute(A + "status") != ACCEPTED:
        return None
    text = line.GetAttribute(A + "acceptedLength")
    return float(text) if text else None


def _source_line(session: TrackingSession, lesion_line, t: int):
    if session.mode == "baseline" or t == 1:
        return lesion_line
    return follow_up_line(lesion_line, t - 1)


def carried_points(session: TrackingSession, lesion_line, t: int, field_for: FieldFor | None = None):
    """Where the source line's end points go in follow-up ``t``: through the pair's dense field when there
    is one (and covers them), else moved by the lesion's point-match translation. Returns (points, how)."""
    source = _source_line(session, lesion_line, t)
    if source is None:
        raise InputError(f"follow-up {t} is carried from follow-up {t - 1}, which has no line yet")
    ends = line_points(source)
    fixed_volume, fixed_points = session.source(t)
    field = field_for(fixed_volume, session.follow_ups[t - 1]) if field_for is not None else None
    if field is not None:
        moved = field_lookup(ends, *field)
        if np.all(np.isfinite(moved)):
            return moved, FROM_FIELD
    label = label_of(lesion_line)
    matched = session.matched(t)
    if matched is None:
        raise InputError(f"follow-up {t} has no matches yet: track the session first")
    src, dst = pointset_from_markups(fixed_points), pointset_from_markups(matched)
    if label not in (src.labels or []) or label not in (dst.labels or []):
        raise InputError(f"landmark {label!r} has no match in follow-up {t}: track it first")
    i, j = src.label_index(label), dst.label_index(label)
    if not (src.defined[i] and dst.defined[j]):
        raise InputError(f"landmark {label!r} has no match in follow-up {t}: track it first")
    return ends + (dst.points[j] - src.points[i]), FROM_TRANSLATION


def propose(session: TrackingSession, lesion_line, t: int, field_for: FieldFor | None = None):
    """Place (or re-place) the proposed line of follow-up ``t``; a line the reader accepted or is adjusting
    is the reader's and stays as it is. Returns (line node, what was done)."""
    line = follow_up_line(lesion_line, t)
    if line is not None and status(line) != NOT_REVIEWED:
        return line, "kept: " + status(line)
    points, how = carried_points(session, lesion_line, t, field_for)
    if line is None:
        line = _new_line(session, lesion_line, t)
    line.RemoveAllControlPoints()
    for p in points:
        line.AddControlPointWorld(*p)
    line.SetLocked(False)
    _colour(line, PROPOSED_COLOUR)
    line.SetAttribute(A + "status", NOT_REVIEWED)
    line.SetAttribute(A + "source", how)
    line.SetAttribute(A + "proposed", " ".join(repr(float(c)) for c in line_points(line).reshape(-1)))
    return line, how


def _new_line(session: TrackingSession, lesion_line, t: int):
    scene = session.node.GetScene()
    volume = session.follow_ups[t - 1]
    name = scene.GenerateUniqueName(f"{label_of(lesion_line)} {volume.GetName()}")
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    line.CreateDefaultDisplayNodes()
    line.SetAttribute(A + "timePoint", str(t))
    while lesion_line.GetNumberOfNodeReferences(FOLLOW_UP_ROLE) < t - 1:  # placeholders keep the order
        lesion_line.AddNodeReferenceID(FOLLOW_UP_ROLE, lesion_line.GetID())
    if lesion_line.GetNumberOfNodeReferences(FOLLOW_UP_ROLE) < t:
        lesion_line.AddNodeReferenceID(FOLLOW_UP_ROLE, line.GetID())
    else:
        lesion_line.SetNthNodeReferenceID(FOLLOW_UP_ROLE, t - 1, line.GetID())
    return line


def propose_all(session: TrackingSession, field_for: FieldFor | None = None) -> list[tuple[str, int, str]]:
    """Proposals for every lesion at every follow-up, in time order (a follow-up tracked from the previous
    one is carried from that one's line). Returns (label, t, what was done) per line."""
    done = []
    for lesion_line in lesions(session):
        for t in range(1, len(session.follow_ups) + 1):
            _line, what = propose(session, lesion_line, t, field_for)
            done.append((label_of(lesion_line), t, what))
    return done


# --- the reader's per-study assessment and the table ------------------------------------------------


def set_assessment(session: TrackingSession, t: int, new_lesions: str | None = None, non_target: str | None = None):
    """What the reader assessed at follow-up ``t``: new lesions (no, yes, equivocal) and the non-target
    lesions' response (CR, non-CR/non-PD, PD, NE; empty: none followed). None: unchanged."""
    if not 1 <= t <= len(session.follow_ups):
        raise InputError(f"time point {t}: the session has follow-ups 1..{len(session.follow_ups)}")
    if new_lesions is not None:
        if new_lesions not in (n.value for n in NewLesions):
            raise InputError(f"new lesions {new_lesions!r}: choose no, yes or equivocal")
        session.node.SetParameter(f"worksheet.newLesions.{t}", new_lesions)
    if non_target is not None:
        if non_target and non_target not in NON_TARGET_CHOICES:
            raise InputError(f"non-target response {non_target!r}: choose {', '.join(NON_TARGET_CHOICES)}")
        session.node.SetParameter(f"worksheet.nonTarget.{t}", non_target)


def timepoint_names(session: TrackingSession) -> list[str]:
    """Each time point's name in the worksheet: its volume's name (numbered where two are alike)."""
    names = [v.GetName() if v is not None else "?" for v in session.volumes()]
    return [f"{n} ({t})" if names.count(n) > 1 else n for t, n in enumerate(names)]


def build_worksheet(session: TrackingSession) -> Worksheet:
    """The response table of the session (RECIST 1.1, :func:`MedDIFTLib.followup.recist.assess`) from the
    lengths the reader accepted."""
    lines = lesions(session)
    if not lines:
        raise InputError("the worksheet has no lesions: measure one on the baseline and add it")
    names = timepoint_names(session)
    described = [lesion_description(line) for line in lines]
    # non-target lesions followed but not assessed at a study: not evaluable there (a CR becomes a PR)
    unassessed = Response.NE if any(les.kind == Kind.NON_TARGET for les in described) else None
    timepoints = [TimePoint(names[0])]
    for t in range(1, len(names)):
        new = session.node.GetParameter(f"worksheet.newLesions.{t}") or NewLesions.NO.value
        nt = session.node.GetParameter(f"worksheet.nonTarget.{t}")
        timepoints.append(TimePoint(names[t], NewLesions(new), NON_TARGET_CHOICES[nt] if nt else unassessed))
    lengths = {(label_of(line), names[t]): accepted_length(line, t) for line in lines for t in range(len(names))}
    return assess(described, timepoints, lengths)
