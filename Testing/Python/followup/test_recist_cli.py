"""``meddift recist`` as a user runs it (a real subprocess): the table from a CSV, both exports, and bad
input refused before anything is written."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

LENGTHS = """lesion,kind,organ,location,lymph_node,timepoint,length_mm
L1,target,liver,segment 7,no,baseline,40
L1,target,liver,segment 7,no,month 3,26
L1,target,liver,segment 7,no,month 6,33
N1,target,lymph node,subcarinal,yes,baseline,20
N1,target,lymph node,subcarinal,yes,month 3,12
N1,target,lymph node,subcarinal,yes,month 6,12
B1,non-target,bone,T9,no,baseline,
"""
TIMEPOINTS = """timepoint,new_lesions,non_target
month 3,no,non-CR/non-PD
month 6,no,non-CR/non-PD
"""


def _meddift(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "MedDIFTLib.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_table_and_both_exports(tmp_path):
    (tmp_path / "lengths.csv").write_text(LENGTHS)
    (tmp_path / "tp.csv").write_text(TIMEPOINTS)
    res = _meddift(
        "recist", "lengths.csv", "--timepoints", "tp.csv", "--out", "ws.csv", "--html", "ws.html", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    # 60 -> 38 (-36.7%, PR) -> 45: -25% from baseline (not PR), +7 mm but +18.4% from the nadir 38 (not PD): SD
    rows = list(csv.reader((tmp_path / "ws.csv").read_text().splitlines()))
    table = rows[rows.index([]) + 1 :]
    assert table[0][:9] == [
        "timepoint",
        "sum_mm",
        "change_from_baseline",
        "nadir_mm",
        "change_from_nadir",
        "target",
        "non_target",
        "new_lesions",
        "overall",
    ]
    assert table[2][:9] == ["month 3", "38.0", "-36.7%", "60.0", "-36.7%", "PR", "non-CR/non-PD", "no", "PR"]
    assert table[3][:9] == ["month 6", "45.0", "-25.0%", "38.0", "+18.4%", "SD", "non-CR/non-PD", "no", "SD"]
    assert rows[0] == ["lesion", "kind", "organ", "location", "lymph_node", "baseline", "month 3", "month 6"]
    assert rows[2] == ["N1", "target", "lymph node", "subcarinal", "yes", "20.0", "12.0", "12.0"]
    page = (tmp_path / "ws.html").read_text()
    assert "<td>month 6</td><td>45.0</td>" in page and "RECIST 1.1" in page
    assert "month 6" in res.stdout and "SD" in res.stdout


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "lengths.csv").write_text(LENGTHS.replace("month 6,33", "month 6,33 mm"))
    res = _meddift("recist", "lengths.csv", "--out", "ws.csv", cwd=tmp_path)
    assert res.returncode == 2 and "line 4: length_mm '33 mm' is not a number" in res.stderr
    assert not (tmp_path / "ws.csv").exists()
    (tmp_path / "lengths.csv").write_text(LENGTHS)
    res = _meddift("recist", "lengths.csv", "--out", "lengths.csv", cwd=tmp_path)
    assert res.returncode == 2 and "never replaces an input" in res.stderr
    assert (tmp_path / "lengths.csv").read_text() == LENGTHS


def test_a_ctrl_c_while_the_report_is_written_leaves_the_earlier_pair_whole(tmp_path, monkeypatch):
    """The CSV and the report are one set: an interruption (SIGINT, as KeyboardInterrupt) while the report
    is being made leaves the earlier CSV and report byte for byte, with no private copy beside them.
    ``recist`` takes milliseconds, too fast to be caught by the polling the other commands' SIGINT tests
    use, so the interruption is raised in the process at that step, through the real ``run``."""
    from MedDIFTLib.cli import build_parser
    from MedDIFTLib.followup import worksheet_io

    (tmp_path / "lengths.csv").write_text(LENGTHS)
    (tmp_path / "tp.csv").write_text(TIMEPOINTS)
    args = ["recist", "lengths.csv", "--timepoints", "tp.csv", "--out", "ws.csv", "--html", "ws.html"]
    assert _meddift(*args, cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(worksheet_io, "worksheet_html", interrupted)
    parsed = build_parser().parse_args([*args, "--force"])
    with pytest.raises(KeyboardInterrupt):
        parsed.func(parsed)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
