"""The protocol codec: match results encoded and decoded in one place, and the version the client checks."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from MedDIFTLib.data.points import describe, parse_description
from MedDIFTLib.service.client import WorkerClient, WorkerError
from MedDIFTLib.service.protocol import (
    PROTOCOL_VERSION,
    decode_match,
    dumps,
    encode_match,
    loads,
    protocol_mismatch,
)


def test_match_result_round_trips_with_undefined_points_and_nan_scores():
    pts = np.array([[1.0, 2.0, 3.0], [np.nan] * 3])
    values = {
        "similarity": np.array([0.9, np.nan]),
        "confidence": np.array([0.5, np.nan]),
        "margin": np.array([0.05, np.nan]),
        "fb_error_mm": np.array([1.25, np.nan]),
    }
    line = dumps(encode_match(pts, ["a", "b"], values, ["doubtful"]))
    back_pts, labels, back_values, warnings = decode_match(loads(line))
    np.testing.assert_array_equal(back_pts, pts)
    assert labels == ["a", "b"] and warnings == ["doubtful"] and set(back_values) == set(values)
    for k in values:
        np.testing.assert_array_equal(back_values[k], values[k])


def test_scores_in_a_description_round_trip_exactly():
    text = describe("note", {"similarity": 0.123456789, "margin": 0.5, "fb_error_mm": float("nan")})
    assert text == "note; similarity=0.123456789; margin=0.5"
    assert parse_description(text) == ("note", {"similarity": 0.123456789, "margin": 0.5})


def test_protocol_version_is_checked():
    assert protocol_mismatch({"event": "ready", "protocol": PROTOCOL_VERSION}) is None
    assert "protocol 0" in protocol_mismatch({"event": "ready", "protocol": 0, "version": "0.0.1"})


def test_client_refuses_a_worker_of_another_protocol(tmp_path):
    (tmp_path / "old_worker.py").write_text(
        'import json, sys, time\nprint(json.dumps({"id": None, "event": "ready", "protocol": 0}), flush=True)\n'
        "time.sleep(60)\n"
    )
    client = WorkerClient(python=sys.executable, cwd=str(tmp_path), module="old_worker")
    t0 = time.monotonic()
    client.launch()  # returns at once: the GUI never waits for a worker to start
    assert time.monotonic() - t0 < 5
    with pytest.raises(WorkerError, match="speaks protocol 0") as err:
        while not client.poll_ready(0.1):
            assert time.monotonic() - t0 < 60
    assert err.value.kind == "ProtocolMismatch" and not client.alive
