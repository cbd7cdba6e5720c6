"""Progress on the terminal: a line per stage change on stderr, with elapsed seconds, and within a
long stage a line every ``every`` seconds with the share done and an estimate of the time left."""

from __future__ import annotations

import sys
import time


class ProgressPrinter:
    """A :data:`~MedDIFTLib.runtime.Progress` callback that prints a line per stage change, and a
    line with the time left (linear in the share done) every ``every`` seconds of a long stage."""

    last: str | None  # the stage of the last line printed

    def __init__(self, stream=None, every: float = 10.0, clock=time.time):
        # Resolved at call time, not import time: sys.stderr may be replaced (pytest, Slicer).
        self.stream, self.every, self.clock = stream, float(every), clock
        self.t0 = clock()
        self.last, self.stage_t0, self.printed = None, self.t0, self.t0

    def __call__(self, stage: str, fraction: float):
        now = self.clock()
        line = None
        if stage != self.last:
            self.last, self.stage_t0, self.printed = stage, now, now
            line = f"{stage} {100 * fraction:3.0f}%"
        elif fraction >= 1.0:
            line = f"{stage} 100%"
        elif now - self.printed >= self.every and fraction > 0.0:
            left = (now - self.stage_t0) * (1.0 - fraction) / fraction
            line = f"{stage} {100 * fraction:3.0f}%, about {left:.0f} s left"
        if line is not None:
            self.printed = now
            stream = self.stream or sys.stderr
            stream.write(f"[{now - self.t0:7.1f}s] {line}\n")
            stream.flush()
