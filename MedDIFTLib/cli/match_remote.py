"""``meddift match ... --server URL``: the same job and the same output files, computed by a server.

The landmarks are read and the outputs written here, exactly as in a local run; the scans (with
their ``--fixed-hu-offset``/``--moving-hu-offset``, applied by the server) and the ``--mask`` go up
as bytes; only the features, the dense registration (``--prior dense``) and the search happen on the server
(``meddift serve``), through the same client the Slicer module uses. A prior that is a
transform file is turned into its 4x4 matrix here: the server never reads a path a client names.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict
from pathlib import Path

from ..data.image_io import is_itk_transform_text, read_matrix_file
from ..data.landmark_io import read_points, write_points
from ..data.points import PointSet
from ..errors import InputError, render
from ..service.protocol import decode_match
from ..service.remote_client import LOCAL_ONLY, RemoteClient, read_token
from .options import engine_options, match_options
from .progress import ProgressPrinter
from .register import registration_options


def remote_prior(spec):
    """What a ``--prior`` becomes on the wire: a name the server knows, or a 4x4 matrix read here."""
    if spec in (None, "", "identity", "coarse", "dense"):
        return spec or None
    path = Path(spec)
    if path.suffix.lower() == ".npy" or (path.suffix.lower() == ".txt" and path.is_file()
                                         and not is_itk_transform_text(path)):
        return read_matrix_file(path, "a prior matrix").tolist()
    raise InputError(f"--prior {spec}: with --server only identity, coarse, dense or a 4x4 RAS matrix file "
                     "(.txt/.npy) can be used; run without --server for ITK transforms and displacement fields")


@contextlib.contextmanager
def remote_session(args, registration=None):
    """A configured server session (the engine options of ``args``), closed at the end; yields
    (client, on_event). The token is read here and never printed."""
    token = read_token(args.token_file)
    if token is None:
        print("meddift: warning: no token (--token-file F or MEDDIFT_TOKEN); the server must run --no-auth",
              file=sys.stderr)
    engine = {k: v for k, v in asdict(engine_options(args)).items() if k not in LOCAL_ONLY}
    matching = asdict(match_options(args)) if hasattr(args, "radius") else {}
    progress = ProgressPrinter()

    def on_event(msg):
        if msg.get("event") == "progress":
            progress(msg["stage"], msg["fraction"])

    client = RemoteClient(args.server, token=token, ca_file=args.ca_file)
    try:
        client.start(timeout=60)
        conf = client.request("configure", on_event, engine=engine, matching=matching,
                              registration=None if registration is None else asdict(registration))
        print(f"meddift: backbone: {conf['note']} (on {args.server}, device {conf['device']})", file=sys.stderr)
        yield client, on_event
    finally:
        client.stop()


def load_pair(client, on_event, args, extract: bool = True) -> None:
    """Both scans onto the server (not sent again when it holds the same bytes), each with its own HU
    offset (applied by the server as a local run applies it), their features computed."""
    for key, path, offset in (("fixed", args.fixed, args.fixed_hu_offset),
                              ("moving", args.moving, args.moving_hu_offset)):
        client.request("load_volume", on_event, name=key, path=str(path), label=Path(path).name,
                       hu_offset=float(offset or 0.0))
        if extract:
            client.request("extract", on_event, name=key)


def run_remote(args) -> int:
    reference = None
    if args.points_format in ("learn2reg", "elastix"):
        from ..data.image_io import read_volume

        reference = read_volume(args.fixed)
    points = read_points(args.points, format=args.points_format, reference=reference)
    prior = remote_prior(args.prior)
    registration = registration_options(args) if prior == "dense" else None
    with remote_session(args, registration) as (client, on_event):
        if args.mask:  # its bytes, as a scan's (the server never reads a path); first: a bad one stops the work
            client.request("load_volume", on_event, name="mask", path=str(args.mask), label=Path(args.mask).name)
        load_pair(client, on_event, args)
        result = client.request("match", on_event, fixed="fixed", moving="moving", points=points.points.tolist(),
                                labels=list(points.labels), prior=prior, mask="mask" if args.mask else None)
        pts, labels, values, warnings = decode_match(result)
        if result.get("warning_templates") is not None:  # in this command's words (--moving-hu-offset ...)
            warnings = [render(t, "cli") for t in result["warning_templates"]]
        for w in warnings:
            print(f"meddift: warning: {w}", file=sys.stderr)
        matched = PointSet(pts, labels, values, name=f"{points.name or 'landmarks'} matched")
        write_points(matched, args.out, force=args.force)
        print(f"meddift: {len(matched)} points matched -> {args.out}", file=sys.stderr)
        if args.heatmap_for:
            idx = points.label_index(args.heatmap_for)
            client.request("heatmap", on_event, fixed="fixed", moving="moving", point=points.points[idx].tolist(),
                           out=str(args.heatmap))
            print(f"meddift: heatmap of {args.heatmap_for} -> {args.heatmap}", file=sys.stderr)
    return 0
