"""``meddift register ... --server URL``: the same output folder as a local run, computed by a server.

The server registers the scans and writes the field, the inverse field and the warped moving
scan into its session folder; they are downloaded into a temporary folder here and then put in
place under the output rules of a local run (exclusive without ``--force``, atomic with it; the
outputs were checked before anything was sent). The report is the server's (the same fields as
a local run's), and the before/after figure is drawn here from the local scans and the warped one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..atomic import atomic_path, write_text_atomic
from .match_remote import load_pair, remote_session


def run_remote_register(args, opts, initial, paths: dict) -> dict:
    """Register on the server; returns {what: path} of the outputs written and ``report_data``."""
    tmp = Path(tempfile.mkdtemp(prefix="meddift-register-"))
    try:
        local = {key: tmp / paths[key].name for key in ("field", "inverse_field", "moving_resampled")}
        with remote_session(args) as (client, on_event):
            load_pair(client, on_event, args, extract=False)  # register computes the features it needs
            result = client.request("register", on_event, fixed="fixed", moving="moving", options=asdict(opts),
                                    initial=None if initial is None else [list(map(float, r)) for r in initial],
                                    out=str(local["field"]), inverse=str(local["inverse_field"]),
                                    warped=str(local["moving_resampled"]))
        written = {}
        for key, src in local.items():
            with atomic_path(paths[key], suffix="".join(src.suffixes[-2:]) or ".tmp", force=args.force) as dest:
                shutil.copyfile(src, dest)
            written[key] = paths[key]
        report = result["report"]
        write_text_atomic(paths["report"], json.dumps(report, indent=2, default=float) + "\n", force=args.force)
        written["report"] = paths["report"]
        if not args.no_figure and _figure(args, local["moving_resampled"], paths["figure"]):
            written["figure"] = paths["figure"]
        written["report_data"] = report
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _figure(args, warped_path: Path, out: Path) -> bool:
    """The before/after figure of a local run, from the scans here and the warped scan downloaded."""
    from ..data.image_io import read_volume
    from ..registration.outputs import _figure as draw  # the local run's own drawing

    return draw(read_volume(args.fixed), read_volume(args.moving), read_volume(warped_path), out, args.force)
