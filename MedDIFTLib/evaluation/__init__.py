"""Evaluation: the phantom with exact motion, TRE metrics, benchmark cases, the methods compared,
the harness that runs them and writes reports, ablations and the demo."""
