"""``meddift cache info|clear``: what the cache holds (pyramids and dense fields), and emptying it.

Only entries the cache wrote are counted and removed (:mod:`MedDIFTLib.features.cache`); a folder
that is a file or cannot be read is an error (exit code 2) in those words, never "0 files".
"""

from __future__ import annotations

from ..features.cache import FeatureCache


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def run_info(args) -> int:
    info = FeatureCache(args.cache_dir).info()
    print(f"feature cache: {info['folder']}")
    print(
        f"  {info['files'] - info['fields']} pyramid file(s) and {info['fields']} dense field(s), "
        f"{_gb(info['bytes'])} of at most {_gb(info['limit_bytes'])} "
        "(MEDDIFT_CACHE_MAX_GB; least recently used removed first)"
    )
    return 0


def run_clear(args) -> int:
    res = FeatureCache(args.cache_dir).clear()
    print(
        f"feature cache: {res['folder']}: removed {res['files']} file(s), {_gb(res['bytes'])} freed "
        "(files the cache did not write are left alone)"
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cache",
        help="the feature cache: info, clear",
        description="Feature pyramids and dense fields are cached on disk by image content, backbone "
        "and options, so a scan is never encoded twice and a pair never registered twice. "
        "The cache stays under MEDDIFT_CACHE_MAX_GB (default 20) and only ever removes "
        "files it wrote itself.",
    )
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    for name, fn, text in (
        ("info", run_info, "where the cache is, how many files and how large"),
        ("clear", run_clear, "remove every cached pyramid and field (nothing else)"),
    ):
        q = csub.add_parser(name, help=text)
        q.add_argument("--cache-dir", help="feature cache folder (default: $MEDDIFT_CACHE_DIR or the user cache)")
        q.set_defaults(func=fn)
