"""``meddift serve``: the engine as an HTTP(S) server for clients on other machines.

The refusals here happen before anything binds a socket, so a mistake in a command line never
exposes a server for a moment: a token is required unless the server listens on loopback only
and ``--no-auth`` is given; a non-loopback address needs TLS unless ``--insecure`` says the
network is trusted. The token itself is read from a file (or ``MEDDIFT_TOKEN``), never from the
command line, where ``ps`` and shell history would show it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from .options import add_weights_dir_argument


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    # an IP family's address is a str (typeshed allows an int for other families)
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)  # type: ignore[union-attr]


def check_exposure(args) -> None:
    """The bind rules of the module docstring, each refusal saying what to pass instead."""
    loopback = is_loopback(args.host)
    if args.no_auth and not loopback:
        raise InputError(
            f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {args.host}: "
            "anyone on the network could use the server; give a --token-file"
        )
    if not args.no_auth and not args.token_file and not os.environ.get("MEDDIFT_TOKEN"):
        raise InputError(
            "a token is required: --token-file F (one token per line) or MEDDIFT_TOKEN; "
            "or --no-auth when listening on 127.0.0.1 only"
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    if not loopback and not args.tls_cert and not args.insecure:
        raise InputError(
            f"{args.host} is not a loopback address: tokens and scans would cross the network in "
            "clear text; give --tls-cert C --tls-key K, or --insecure on a network you trust"
        )
    for opt in ("tls_cert", "tls_key", "token_file"):
        value = getattr(args, opt)
        if value and not Path(value).is_file():
            raise InputError(f"--{opt.replace('_', '-')} {value}: no such file")


def check_limits(args) -> None:
    """Numbers that would make a limit meaningless (NaN, negative) are refused with the option's name."""
    for opt, low in (("retention", 0.0), ("max_json_mb", 1e-6), ("idle_timeout", 1e-6)):
        value = getattr(args, opt)
        if not (math.isfinite(value) and value >= low):
            raise InputError(
                f"--{opt.replace('_', '-')} {value}: give a finite number of "
                f"{'seconds' if opt != 'max_json_mb' else 'MB'}, {'0 or more' if low == 0 else 'over 0'}"
            )


def run(args) -> int:
    from ..service.server import run_server
    from ..service.server_logs import redact_root_handlers
    from ..service.server_state import Limits, ServerState, Tokens

    check_exposure(args)
    check_limits(args)
    tokens = None
    if not args.no_auth:
        tokens = Tokens.from_file(args.token_file) if args.token_file else Tokens([os.environ["MEDDIFT_TOKEN"].strip()])
    limits = Limits(
        max_upload_mb=args.max_upload_mb,
        max_voxels=args.max_voxels,
        max_sessions=args.max_sessions,
        max_queued_jobs=args.max_queued_jobs,
        idle_timeout_s=args.idle_timeout,
        max_json_mb=args.max_json_mb,
        retention_s=args.retention,
    )
    engine = {"device": args.device, "use_cache": True}
    if args.cache_dir:
        engine["cache_dir"] = args.cache_dir
    if args.weights_dir:
        engine["weights_dir"] = args.weights_dir
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="meddift-serve: %(message)s")
    redact_root_handlers()  # no token in any log, however a client sent it
    own_work_dir = args.work_dir is None
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="meddift-serve-"))
    state = ServerState(limits, work_dir, engine, tokens)
    scheme = "https" if args.tls_cert else "http"
    auth = "none (--no-auth, loopback only)" if tokens is None else f"{len(tokens)} token(s)"
    print(
        f"meddift: serving on {scheme}://{args.host}:{args.port} (auth: {auth}; device {args.device}; "
        f"sessions in {work_dir})",
        file=sys.stderr,
        flush=True,
    )
    try:
        run_server(state, args.host, args.port, args.tls_cert, args.tls_key, args.log_level)
    finally:
        if own_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the engine over HTTP(S) to Slicer and scripts on other machines",
        description="Run MedDIFT as a server: clients upload scans, features are computed on this "
        "machine's device, matches come back. See docs/server.md.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token-file", help="file with the accepted tokens, one per line (or set MEDDIFT_TOKEN)")
    p.add_argument("--no-auth", action="store_true", help="no token (only allowed on a loopback address)")
    p.add_argument("--tls-cert", help="TLS certificate (PEM); with --tls-key the server speaks HTTPS")
    p.add_argument("--tls-key", help="TLS private key (PEM)")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP on a non-loopback address")
    p.add_argument("--device", default="auto", help="where jobs run: auto, cpu or cuda[:N] (default auto)")
    add_weights_dir_argument(p)
    p.add_argument(
        "--cache-dir", help="feature cache, kept across restarts (default: $MEDDIFT_CACHE_DIR or the user cache)"
    )
    p.add_argument(
        "--work-dir",
        help="folder for the sessions' uploads and results, in WORK_DIR/sessions/ (default: a "
        "temporary folder, removed on exit); a session's files are deleted when it "
        "closes or expires, when the server stops, and at the next start after a crash",
    )
    p.add_argument(
        "--retention",
        type=float,
        default=3600.0,
        help="seconds a job's result file (heatmap, displacement field) is kept on the server when its "
        "client does not download and delete it; 0: until the session ends (default 3600)",
    )
    g = p.add_argument_group("limits")
    g.add_argument("--max-upload-mb", type=float, default=1024.0, help="largest upload in MB (default 1024)")
    g.add_argument("--max-voxels", type=int, default=600_000_000, help="most voxels per volume (default 600M)")
    g.add_argument("--max-sessions", type=int, default=16, help="most open sessions (default 16)")
    g.add_argument("--max-queued-jobs", type=int, default=32, help="most jobs waiting in the queue (default 32)")
    g.add_argument(
        "--max-json-mb",
        type=float,
        default=8.0,
        help="largest JSON request body in MB, refused before it is parsed (default 8)",
    )
    g.add_argument(
        "--idle-timeout",
        type=float,
        default=1800.0,
        help="seconds without requests after which a session and its files are deleted (default 1800)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)
