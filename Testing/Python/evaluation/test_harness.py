"""Evaluation harness: running methods on cases, failures kept as failures, the report."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.evaluation.cases import phantom_suite
from MedDIFTLib.evaluation.harness import evaluate, write_report
from MedDIFTLib.evaluation.methods import Identity, Method


def test_report_on_a_small_phantom_suite(tmp_path):
    cases = phantom_suite(seeds=(1,), amplitudes=(20.0,), n_landmarks=6, shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0))
    res = evaluate(cases, [Identity()], log=lambda m: None)
    report = write_report(res, tmp_path)
    text = report.read_text()
    assert "## phantom (1 cases; TRE in mm over all landmarks)" in text and "| identity | 6 |" in text
    assert (tmp_path / "phantom_tre_box.png").exists() and (tmp_path / "phantom_tre_vs_initial.png").exists()
    rows = (tmp_path / "landmarks.csv").read_text().splitlines()
    assert rows[0] == "dataset,case,method,label,tre_mm,initial_mm" and len(rows) == 7
    # identity: the TRE is the initial displacement
    for r in rows[1:]:
        f = r.split(",")
        assert float(f[4]) == pytest.approx(float(f[5]))


class _Broken(Method):
    name = "broken"

    def map_points(self, case):
        raise RuntimeError("diverged")


def test_a_method_that_raises_scores_failures_and_the_others_still_run(tmp_path):
    cases = list(
        phantom_suite(seeds=(1, 2), amplitudes=(20.0,), n_landmarks=4, shape=(56, 56, 56), spacing=(5.0, 5.0, 5.0))
    )
    logged = []
    res = evaluate(cases, [_Broken(), Identity()], log=logged.append)
    summ = res.summary("phantom")
    assert summ["broken"]["n"] == 8 and summ["broken"]["n_failed"] == 8 and summ["broken"]["failed_cases"] == 2
    assert summ["identity"]["n_failed"] == 0 and np.isfinite(summ["identity"]["mean"])
    assert sum("broken: FAILED (RuntimeError: diverged)" in m for m in logged) == 2
    text = write_report(res, tmp_path).read_text()
    assert "- seed1_amp20_noise20, broken: RuntimeError: diverged" in text
    per_case = text[text.index("### phantom: mean TRE per case") :].splitlines()
    assert per_case[2] == "| case | broken | identity |"
    row = next(r for r in per_case if r.startswith("| seed2_amp20_noise20 |"))
    assert row.split(" | ")[1] == "failed"
    ident = float(row.split(" | ")[2].rstrip(" |"))
    assert ident == pytest.approx(np.mean(res.errors("phantom", "identity", "seed2_amp20_noise20")), abs=0.006)
