"""The terminal progress: stage changes, and the time left within a long stage."""

from __future__ import annotations

import io

from MedDIFTLib.cli.progress import ProgressPrinter


def test_long_stages_show_the_time_left():
    t = [100.0]
    out = io.StringIO()
    p = ProgressPrinter(out, every=10.0, clock=lambda: t[0])
    p("match", 0.0)
    t[0] += 5.0
    p("match", 0.1)  # too soon for another line
    t[0] += 15.0
    p("match", 0.25)  # 20 s for a quarter: 60 s left
    t[0] += 1.0
    p("match", 1.0)
    p("heatmap", 0.0)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[    0.0s] match   0%",
        "[   20.0s] match  25%, about 60 s left",
        "[   21.0s] match 100%",
        "[   21.0s] heatmap   0%",
    ]
