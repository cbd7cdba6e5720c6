"""Download of the MAISI v1 files from NVIDIA's gated Hugging Face repository, with one plain
sentence per way a download fails (no token, no access, bad token, offline, lost connection).

The files land in the repository's layout under the weights folder and are verified by
:func:`MedDIFTLib.features.maisi.weights.verify_weights` before the download counts as done.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

from ...errors import WeightsError
from .networks import MaisiConfig
from .weights import (
    AUTOENCODER_FILE,
    HF_REPO_ID,
    OFFLINE_HINT,
    REPO_URL,
    UNET_FILE,
    WeightsPaths,
    default_weights_dir,
    find_weights,
    first_line,
    verify_weights,
)


def _hub_error_classes() -> dict:
    """huggingface_hub's exception classes by name (names differ across versions; absent ones match nothing)."""
    from huggingface_hub import utils as hfu

    names = (
        "GatedRepoError",
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "HfHubHTTPError",
        "DisabledRepoError",
    )
    classes = {n: getattr(hfu, n, None) for n in names}
    try:
        from huggingface_hub import errors as hfe

        for n in names:
            classes[n] = classes[n] or getattr(hfe, n, None)
    except ImportError:  # pragma: no cover - old huggingface_hub
        pass
    return {n: c or type(f"_Absent{n}", (Exception,), {}) for n, c in classes.items()}


def _network_error_classes() -> tuple:
    """Transport errors of whichever HTTP client huggingface_hub uses (httpx2, httpx or requests)."""
    out = []
    for mod, attr in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests.exceptions", "ConnectionError"),
        ("requests.exceptions", "Timeout"),
    ):
        try:
            out.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(out)


def _silent_tqdm():
    """huggingface_hub's tqdm, always disabled: ``progress=False`` without touching global settings."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class SilentTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


def _explain_download_error(exc: BaseException, filename: str, endpoint: str | None) -> WeightsError:
    """One plain sentence per way a Hub download fails, saying what to do."""
    from huggingface_hub import constants

    E = _hub_error_classes()
    host = endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    server_says = getattr(getattr(exc, "response", None), "headers", {}).get("X-Error-Message", "") if status else ""
    if isinstance(exc, E["GatedRepoError"]):
        if status == 403:
            return WeightsError(
                f"access to {REPO_URL} was refused: the token was accepted, but its account has not been granted "
                f"access to this gated repository. Open {REPO_URL} logged in as that user, accept the licence, wait "
                "until access is granted, then run the download again"
            )
        return WeightsError(
            f"access to {REPO_URL} was refused: the repository is gated and no token was sent. Log in on Hugging "
            "Face, accept the MAISI licence on the repository page, create an access token (Settings > Access "
            "Tokens, 'read'), then pass it with --token or set HF_TOKEN"
        )
    if isinstance(exc, E["HfHubHTTPError"]) and status == 401 and not isinstance(exc, E["RepositoryNotFoundError"]):
        return WeightsError(
            f"the Hugging Face token was rejected ({server_says or '401 Unauthorized'}): it is "
            "invalid, expired or revoked. Create a new 'read' token at "
            "https://huggingface.co/settings/tokens and pass it with --token or set HF_TOKEN"
        )
    if isinstance(exc, E["HfHubHTTPError"]) and status == 403 and not isinstance(exc, E["RepositoryNotFoundError"]):
        return WeightsError(
            f"the Hugging Face token may not read {REPO_URL} ({server_says or '403 Forbidden'}); a "
            "fine-grained token needs 'read access to contents of all public gated repos', or use a "
            "'read' token"
        )
    if isinstance(exc, E["RevisionNotFoundError"]):
        return WeightsError(f"the requested revision of {HF_REPO_ID} was not found at {host}")
    if isinstance(exc, E["RepositoryNotFoundError"]) or isinstance(exc, E["DisabledRepoError"]):
        return WeightsError(
            f"repository {HF_REPO_ID} not found at {host} (or not visible with this token); check "
            "the token, and the endpoint if HF_ENDPOINT is set"
        )
    if isinstance(exc, E["EntryNotFoundError"]) and not isinstance(exc, E["LocalEntryNotFoundError"]):
        return WeightsError(
            f"{filename} not found in {HF_REPO_ID} at {host}; the repository's layout may have "
            f"changed: download {Path(filename).name} by hand and set MEDDIFT_WEIGHTS_DIR"
        )
    if isinstance(exc, E["OfflineModeIsEnabled"]) or getattr(constants, "HF_HUB_OFFLINE", False):
        return WeightsError(
            f"cannot download {filename}: huggingface_hub is in offline mode (HF_HUB_OFFLINE is "
            f"set), so there is no connection to {host}. Unset it to download, or {OFFLINE_HINT}"
        )
    if isinstance(exc, E["LocalEntryNotFoundError"]) or isinstance(exc, _network_error_classes()):
        cause = exc if isinstance(exc, _network_error_classes()) else (exc.__cause__ or exc.__context__ or exc)
        return WeightsError(
            f"cannot download {filename}: the connection to {host} failed or was lost "
            f"({type(cause).__name__}: {first_line(cause)}). Check the network or proxy and run "
            f"the download again, or {OFFLINE_HINT}"
        )
    if isinstance(exc, E["HfHubHTTPError"]):
        return WeightsError(f"download of {filename} from {host} failed: {first_line(exc)}")
    return WeightsError(f"download of {filename} failed: {type(exc).__name__}: {first_line(exc)}")


def download_weights(
    dest=None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    verify: bool = True,
    cfg: MaisiConfig | None = None,
    force: bool = False,
) -> WeightsPaths:
    """Fetch both files from the gated repository into ``dest`` (repository layout), then verify them.

    ``token=None`` lets huggingface_hub use ``HF_TOKEN`` or a saved login. It downloads to a
    uniquely named ``.incomplete`` file and renames it only when complete (a failed download
    deletes it), so an interrupted download never leaves a half file at the final path; files
    already present and up to date are not downloaded again unless ``force``.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise WeightsError("huggingface_hub is not installed: pip install huggingface_hub") from exc
    dest = _make_dest(dest)
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    kwargs, toggle = _progress_options(hf_hub_download, progress, are_progress_bars_disabled)
    try:
        if toggle:
            disable_progress_bars()
        _fetch_files(hf_hub_download, dest, token, endpoint, force, kwargs)
    finally:
        if toggle:
            enable_progress_bars()
    paths = find_weights(dest)
    if verify:
        _check_download(paths, cfg)
    return paths


def _make_dest(dest) -> Path:
    """The weights folder (given or the default), created, with a plain error when it cannot be."""
    dest = Path(dest).expanduser() if dest else default_weights_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {dest}: {exc}") from exc
    return dest


def _progress_options(hf_hub_download, progress: bool, are_progress_bars_disabled) -> tuple[dict, bool]:
    """Extra download arguments that silence the bars, and whether to switch the global bars off
    instead (older huggingface_hub has no ``tqdm_class``)."""
    kwargs, toggle = {}, False
    if not progress:
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
            kwargs["tqdm_class"] = _silent_tqdm()
        else:  # older huggingface_hub: switch its bars off for these calls only
            toggle = not are_progress_bars_disabled()
    return kwargs, toggle


def _fetch_files(
    hf_hub_download, dest: Path, token: str | None, endpoint: str | None, force: bool, kwargs: dict
) -> None:
    """Download both files in order, each failure explained in one sentence."""
    for filename in (AUTOENCODER_FILE, UNET_FILE):
        try:
            hf_hub_download(
                HF_REPO_ID,
                filename,
                local_dir=dest,
                token=token or None,
                endpoint=endpoint,
                force_download=force,
                **kwargs,
            )
        except Exception as exc:
            raise _explain_download_error(exc, filename, endpoint) from exc


def _check_download(paths: WeightsPaths, cfg: MaisiConfig | None) -> None:
    """Refuse downloaded files that do not verify, naming every problem."""
    rep = verify_weights(paths, cfg)
    bad = [v["error"] for v in rep.values() if not v["ok"]]
    if bad:
        raise WeightsError("the downloaded files do not verify: " + " | ".join(bad))
