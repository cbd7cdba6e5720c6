"""TRE utilities on hand-made input."""

import numpy as np
import pytest

from MedDIFTLib.evaluation.metrics import format_table, summarize, tre


def test_tre_is_euclidean_per_point():
    pred = np.array([[0.0, 0, 0], [3, 4, 0], [1, 2, 2]])
    true = np.zeros((3, 3))
    np.testing.assert_allclose(tre(pred, true), [0.0, 5.0, 3.0])


def test_summary_of_known_errors():
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s["n"] == 5 and s["n_failed"] == 0
    assert s["mean"] == pytest.approx(4.0)
    assert s["median"] == pytest.approx(3.0)
    assert s["max"] == pytest.approx(10.0)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4, 10]))
    assert s["p90"] == pytest.approx(7.6)  # linear interpolation between 4 and 10


def test_missing_predictions_count_as_failures():
    e = tre(np.array([[0.0, 0, 0], [np.nan, np.nan, np.nan]]), np.zeros((2, 3)))
    s = summarize(e)
    assert s["n"] == 2 and s["n_failed"] == 1 and s["mean"] == 0.0
    assert np.isnan(summarize([np.nan])["mean"])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 predictions for 3 true points"):
        tre(np.zeros((2, 3)), np.zeros((3, 3)))


def test_table_has_a_row_per_method():
    t = format_table({"identity": summarize([5.0, 7.0]), "MedDIFT": summarize([1.0, 2.0])}, "### case")
    assert "| identity | 2 | 6.00 |" in t and "| MedDIFT | 2 | 1.50 |" in t and t.startswith("### case")
