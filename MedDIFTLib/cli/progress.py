"""Progress on the terminal: one line per stage change on stderr, with elapsed seconds."""

from __future__ import annotations

import sys
import time


class ProgressPrinter:
    """A :data:`~MedDIFTLib.runtime.Progress` callback that prints a line per stage change."""

    def __init__(self, stream=None):
        # Resolved at call time, not import time: sys.stderr may be replaced (pytest, Slicer).
        self.stream, self.last, self.t0 = stream, None, time.time()

    def __call__(self, stage: str, fraction: float):
        if stage != self.last or fraction >= 1.0:
            stream = self.stream or sys.stderr
            stream.write(f"[{time.time() - self.t0:7.1f}s] {stage} {100 * fraction:3.0f}%\n")
            stream.flush()
            self.last = stage
