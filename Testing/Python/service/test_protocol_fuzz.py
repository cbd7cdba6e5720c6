"""Fuzzing the worker protocol with hypothesis: whatever arrives on stdin, every line out is a
well-formed protocol message, every request gets exactly one reply, and the worker keeps serving."""

from __future__ import annotations

import io
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MedDIFTLib.service.worker import Worker, serve

COMMANDS = Worker.commands()  # the real command names, so the fuzz reaches past the dispatcher
SAFE_COMMANDS = [c for c in COMMANDS if c != "shutdown"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {"cmd": st.one_of(st.sampled_from(SAFE_COMMANDS), st.text(max_size=10), scalars)},
    optional={
        "id": scalars,
        "name": values,
        "path": values,
        "fixed": values,
        "moving": values,
        "points": values,
        "labels": values,
        "prior": values,
        "point": values,
        "out": values,
        "engine": st.one_of(values, st.just({"backbone": "mind-ssc"})),
        "matching": values,
    },
)
garbage = st.one_of(
    st.text(max_size=40),
    st.just("{"),
    st.just("[1, 2]"),
    st.just('"just a string"'),
    st.just('{"cmd": NaN, "id": NaN}'),
)


def _line(item) -> str:
    return item if isinstance(item, str) else json.dumps(item, allow_nan=True)


def _check(lines_in: list[str], tmp_path) -> None:
    out = io.StringIO()
    assert serve(io.StringIO("\n".join(lines_in) + "\n"), out) == 0
    replies = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is strict JSON
    assert replies[0]["event"] == "ready"
    finals = []
    for r in replies[1:]:
        assert isinstance(r, dict)
        if "event" in r:
            assert r["event"] == "progress" and isinstance(r["stage"], str) and 0.0 <= r["fraction"] <= 1.0
            continue
        assert isinstance(r["ok"], bool)
        if not r["ok"]:
            assert isinstance(r["error"], str) and r["error"] and isinstance(r["kind"], str)
            assert "Traceback" not in r["error"]
        finals.append(r)
    # one final reply per non-blank request line, malformed or not
    assert len(finals) == sum(1 for line in lines_in if line.strip())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(requests.map(_line), garbage), min_size=1, max_size=8))
def test_any_request_stream_gets_well_formed_replies(tmp_path, monkeypatch, stream):
    monkeypatch.chdir(tmp_path)  # any path a request names is relative to an empty folder
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    _check([line.replace("\n", " ") for line in stream], tmp_path)


def test_nan_ids_are_echoed_as_null_not_a_crash(tmp_path):
    """Found by the fuzz: json.loads accepts NaN, strict json.dumps refused to echo it and the worker died."""
    out = io.StringIO()
    serve(io.StringIO('{"id": NaN, "cmd": "ping"}\n{"id": NaN, "cmd": "nope"}\n'), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()][1:]
    assert [r["id"] for r in replies] == [None, None]
    assert replies[0]["ok"] is True and replies[1]["error"].startswith("unknown command 'nope'")
    assert not any(isinstance(v, float) and math.isnan(v) for r in replies for v in r.values())


def test_out_of_order_requests_are_refused_with_what_to_send_first(tmp_path):
    out = io.StringIO()
    serve(
        io.StringIO(
            '{"id": 1, "cmd": "extract", "name": "fixed"}\n'
            '{"id": 2, "cmd": "configure", "engine": {"backbone": "mind-ssc"}}\n'
            '{"id": 3, "cmd": "extract", "name": "fixed"}\n'
        ),
        out,
    )
    replies = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines()) if "ok" in r}
    assert replies[1]["error"] == "the worker is not configured: send 'configure' first"
    assert replies[2]["ok"] is True
    assert replies[3]["error"] == "volume 'fixed' is not loaded; send 'load_volume' first (loaded: [])"
