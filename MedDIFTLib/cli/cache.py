"""``meddift cache info|clear``: what the feature cache holds, and emptying it."""

from __future__ import annotations

from ..features.cache import FeatureCache


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def run_info(args) -> int:
    info = FeatureCache(args.cache_dir).info()
    print(f"feature cache: {info['folder']}")
    print(f"  {info['files']} pyramid file(s), {_gb(info['bytes'])} of at most {_gb(info['limit_bytes'])} "
          "(MEDDIFT_CACHE_MAX_GB; least recently used removed first)")
    return 0


def run_clear(args) -> int:
    res = FeatureCache(args.cache_dir).clear()
    print(f"feature cache: {res['folder']}: removed {res['files']} file(s), {_gb(res['bytes'])} freed")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="the feature cache: info, clear",
                       description="Feature pyramids are cached on disk by image content and backbone, so a scan is "
                                   "never encoded twice. The cache stays under MEDDIFT_CACHE_MAX_GB (default 20).")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    for name, fn, text in (("info", run_info, "where the cache is, how many files and how large"),
                           ("clear", run_clear, "remove every cached pyramid")):
        q = csub.add_parser(name, help=text)
        q.add_argument("--cache-dir", help="feature cache folder (default: $MEDDIFT_CACHE_DIR or the user cache)")
        q.set_defaults(func=fn)
