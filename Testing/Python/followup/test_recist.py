"""RECIST 1.1 rules against worked cases: each category, the nadir rule, the 5 mm floor, lymph nodes,
new lesions, a missing measurement, and the non-target-only table. Sums are exact decimal millimetres, so
the boundaries (exactly 30% down, exactly 20% and 5 mm up) are tested on both sides."""

from __future__ import annotations

import pytest

from MedDIFTLib.errors import InputError
from MedDIFTLib.followup import Kind, Lesion, NewLesions, Response, TimePoint, assess

L1, L2 = Lesion("L1", organ="liver"), Lesion("L2", organ="lung")
NODE = Lesion("N1", organ="lymph node", lymph_node=True)


def _run(lesions, series: dict, tps=None):
    """``series``: label -> lengths per time point (None: not measured)."""
    n = len(next(iter(series.values())))
    tps = tps or [TimePoint("baseline")] + [TimePoint(f"t{i}") for i in range(1, n)]
    lengths = {(label, tps[i].name): v for label, vals in series.items() for i, v in enumerate(vals)}
    return assess(lesions, tps, lengths)


def _overall(ws):
    return [r.overall for r in ws.results[1:]]


def test_partial_response_needs_30_percent_from_baseline():
    ws = _run([L1, L2], {"L1": [40.0, 28.0, 29.0], "L2": [20.0, 14.0, 13.0]})  # 60 -> 42 (-30%) -> 42
    assert _overall(ws) == [Response.PR, Response.PR]
    assert ws.results[1].change_from_baseline == pytest.approx(-0.30)
    ws = _run([L1, L2], {"L1": [40.0, 28.1], "L2": [20.0, 14.0]})  # -29.8%
    assert _overall(ws) == [Response.SD]


def test_progression_is_measured_from_the_nadir_not_the_baseline():
    # 100 -> 50 (PR) -> 60: +20% and +10 mm from the nadir 50, though 40% below baseline
    ws = _run([L1], {"L1": [100.0, 50.0, 60.0]})
    assert _overall(ws) == [Response.PR, Response.PD]
    assert ws.results[2].nadir_mm == 50.0 and ws.results[2].change_from_nadir == pytest.approx(0.20)
    ws = _run([L1], {"L1": [100.0, 50.0, 59.9]})
    assert _overall(ws) == [Response.PR, Response.PR]


def test_the_5_mm_absolute_floor_of_progression():
    ws = _run([L1, L2], {"L1": [12.0, 14.0], "L2": [11.0, 13.0]})  # 23 -> 27: +17%; +4 mm
    assert _overall(ws) == [Response.SD]
    ws = _run([L1], {"L1": [20.0, 24.5]})  # +22.5% but +4.5 mm: not progression
    assert _overall(ws) == [Response.SD]
    ws = _run([L1], {"L1": [20.0, 25.0]})  # +25% and +5 mm
    assert _overall(ws) == [Response.PD]


def test_complete_response_allows_nodes_under_10_mm_short_axis():
    ws = _run([L1, NODE], {"L1": [30.0, 0.0], "N1": [18.0, 9.0]})  # sum 9 mm, still CR
    assert _overall(ws) == [Response.CR] and ws.results[1].sum_mm == 9.0
    ws = _run([L1, NODE], {"L1": [30.0, 0.0], "N1": [18.0, 10.0]})  # a node of 10 mm is not normal
    assert _overall(ws) == [Response.PR]


def test_non_target_and_new_lesions_in_the_overall_response():
    tps = [
        TimePoint("baseline"),
        TimePoint("t1", non_target=Response.NON_CR_NON_PD),
        TimePoint("t2", non_target=Response.NE),
        TimePoint("t3", new_lesions=NewLesions.YES),
        TimePoint("t4", non_target=Response.PD),
        TimePoint("t5", new_lesions=NewLesions.EQUIVOCAL),
    ]
    ws = _run([L1, Lesion("NT", kind=Kind.NON_TARGET)], {"L1": [30.0, 0.0, 0.0, 0.0, 0.0, 0.0], "NT": [None] * 6}, tps)
    # target CR everywhere: CR+non-CR/non-PD -> PR, CR+NE -> PR, new lesion -> PD, non-target PD -> PD
    assert _overall(ws) == [Response.PR, Response.PR, Response.PD, Response.PD, Response.CR]
    assert "equivocal" in ws.results[5].reasons[0]


def test_a_missing_target_makes_the_time_point_not_evaluable_unless_progression_is_already_clear():
    ws = _run([L1, L2], {"L1": [30.0, 25.0], "L2": [20.0, None]})
    r = ws.results[1]
    assert r.overall == Response.NE and r.missing == ["L2"] and "L2 not measured" in r.reasons[0]
    ws = _run([L1, L2], {"L1": [30.0, 61.0], "L2": [20.0, None]})  # 61 alone is > 1.2 x 50 and +11 mm
    assert ws.results[1].overall == Response.PD


def test_non_target_only_follow_up_uses_the_second_table():
    nt = Lesion("NT", kind=Kind.NON_TARGET)
    tps = [
        TimePoint("baseline"),
        TimePoint("t1", non_target=Response.NON_CR_NON_PD),
        TimePoint("t2", non_target=Response.CR),
        TimePoint("t3"),
    ]
    ws = _run([nt], {"NT": [None] * 4}, tps)
    assert _overall(ws) == [Response.NON_CR_NON_PD, Response.CR, Response.NE]


def test_baseline_warnings_name_unmeasurable_targets_and_too_many_per_organ():
    small, node = Lesion("S", organ="liver"), Lesion("N", organ="node", lymph_node=True)
    ws = _run(
        [L1, small, Lesion("L3", organ="liver"), node],
        {"L1": [30.0, 30.0], "S": [8.0, 8.0], "L3": [20.0, 20.0], "N": [12.0, 12.0]},
    )
    text = " | ".join(ws.warnings)
    assert "S: baseline longest diameter 8.0 mm is under 10 mm" in text
    assert "N: baseline short axis 12.0 mm is under 15 mm" in text
    assert "3 target lesions in liver" in text


@pytest.mark.parametrize(
    "bad,message",
    [
        ({("L1", "baseline"): -1.0}, "0 mm or more"),
        ({("L9", "baseline"): 3.0}, "not a known lesion"),
        ({("L1", "baseline"): float("nan")}, "0 mm or more"),
    ],
)
def test_bad_lengths_are_refused_in_words(bad, message):
    with pytest.raises(InputError, match=message):
        assess([L1], [TimePoint("baseline")], bad)
