"""Loading from the Hugging Face Hub (and open_clip's weight URLs) with one clear error when offline.

Without network, huggingface_hub retries each request for about 25 s and logs every retry. So a
load first probes the Hub with one socket connect; when that fails, the load is told to use cached
files only (``hub_access`` yields ``local_only``, which loaders pass as ``local_files_only``), and
fails at once if the model is not cached. The switch is per call, never the library's process-wide
``HF_HUB_OFFLINE``: in a shared app one user's offline load must not change another's.

Before a download, ``check_download_size`` asks the Hub how large the weights are and refuses
more than ``max_model_bytes()`` (``GERA_MAX_MODEL_BYTES``, default 2 GB): a visitor naming a
100 GB model must not fill the disk or hold a worker for an hour.
"""
from __future__ import annotations

import hashlib
import os
import socket
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Iterator
from urllib.error import URLError
from urllib.parse import urlparse

from gera.errors import GeraError

OFFLINE_CHOICES = ("image: mobilenet_v2, efficientnet_lite0; text: minilm, phonetic; "
                   "speech: speech_embedding, whisper_base")
_TRUE = {"1", "on", "yes", "true"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_MAX_MODEL_BYTES = 2 * 10 ** 9
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def is_local(source: str) -> bool:
    """Whether ``source`` names something on this disk rather than a Hub model id."""
    return Path(source).expanduser().exists()


def offline_requested() -> bool:
    """Whether the user switched the Hub off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the Hub endpoint (default timeout 3 s). True behind a proxy: a direct
    connect says nothing there, so the client gets to try."""
    if offline_requested():
        return False
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def max_model_bytes() -> int:
    """The largest download ``check_download_size`` allows: ``$GERA_MAX_MODEL_BYTES``, else 2 GB."""
    text = os.environ.get("GERA_MAX_MODEL_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_MODEL_BYTES
    if not text.isascii() or not text.isdigit():
        raise GeraError(f"GERA_MAX_MODEL_BYTES={text!r} is not a whole number of bytes; set it "
                        "like 2000000000 (2 GB), or unset it for the default.")
    return int(text)


def _gigabytes(n: int) -> str:
    return f"{n / 10 ** 9:.1f} GB"


def check_download_size(encoder_name: str, repo_id: str, max_bytes: int | None = None,
                        safetensors_only: bool = False) -> int:
    """The bytes of weights the Hub repo ``repo_id`` holds, asked before downloading anything;
    ``GeraError`` above ``max_bytes`` (default ``max_model_bytes()``).

    Counted: the ``.safetensors`` files, or where there are none the other weight files
    (``.bin``, ``.pt`` …). ``safetensors_only``: a repo without safetensors is refused (its
    weights would be pickles, and transformers is told to load safetensors only).
    """
    from huggingface_hub import HfApi

    limit = max_model_bytes() if max_bytes is None else max_bytes
    info = HfApi().model_info(repo_id, files_metadata=True)
    files = [(f.rfilename, f.size or 0) for f in info.siblings or []]
    safetensors = [size for name, size in files if name.endswith(".safetensors")]
    if safetensors_only and not safetensors:
        raise GeraError(f"Encoder '{encoder_name}': {repo_id} has no .safetensors weights. Only "
                        "safetensors models are loaded (other formats can run code when "
                        "opened); pick a model that offers model.safetensors.")
    total = sum(safetensors or [size for name, size in files if name.endswith(_WEIGHT_SUFFIXES)])
    if total > limit:
        raise GeraError(f"Encoder '{encoder_name}': {repo_id} holds {_gigabytes(total)} of "
                        f"weights, over the {_gigabytes(limit)} limit for a download here. Pick a "
                        "smaller model.")
    return total


def fingerprint(path: str | Path) -> str:
    """A short hash of the names, sizes and mtimes of the files at ``path``: it changes when a
    local model is replaced, so cached embeddings of the old one are not reused."""
    root = Path(path).expanduser()
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    digest = hashlib.sha1()
    for file in files:
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.relative_to(root) if root.is_dir() else file.name}"
                          f"|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_error(encoder_name: str, source: str, exc: BaseException, fix: str,
               local_only: bool = False) -> GeraError:
    """Turn whatever a hub/model loader raised into one user-facing ``GeraError``. ``source``
    says what was being loaded; ``fix`` how to get it onto this machine; ``local_only``: the load
    was limited to cached files (the Hub unreachable), so a missing file means "not cached"."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError)

    chain = list(_chain(exc))
    alternatives = f"Encoders that work offline: {OFFLINE_CHOICES}. Or {fix}"
    if any(isinstance(e, GatedRepoError) for e in chain):
        return GeraError(f"Encoder '{encoder_name}': {source} is a gated model on the Hugging Face "
                         "Hub. Accept its terms on the Hub and log in (`hf auth login`), or use "
                         f"another encoder. {alternatives}.")
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return GeraError(f"Encoder '{encoder_name}': {source} was not found on the Hugging Face "
                         "Hub (or it is private). Check the spelling of the model id, or pass a "
                         "local folder.")
    unreachable = (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError,
                   socket.gaierror, URLError)
    # Loaders limited to cached files report a missing one as a plain OSError / FileNotFoundError.
    not_cached = local_only and any(isinstance(e, OSError) for e in chain)
    if not_cached or any(isinstance(e, unreachable) or "Connect" in type(e).__name__
                         for e in chain):
        why = "HF_HUB_OFFLINE is set" if offline_requested() else "no network connection"
        return GeraError(f"Encoder '{encoder_name}' needs to download {source} from the Hugging "
                         f"Face Hub, which is unreachable here ({why}), and it is not in the local "
                         f"cache. {alternatives}.")
    return GeraError(f"Encoder '{encoder_name}' could not be loaded from {source} "
                     f"({_first_line(exc)}). Check that it is a model of the expected kind, or pick "
                     f"another encoder ({OFFLINE_CHOICES} work offline).")


@contextmanager
def hub_access(encoder_name: str, source: str, needs_hub: bool = True,
               fix: str = "download the model where the Hub is reachable and load it from a "
                          "local folder", repo_id: str | None = None,
               safetensors_only: bool = False) -> Iterator[bool]:
    """Run a model load; yields ``local_only`` (True: the Hub is unreachable, pass
    ``local_files_only=True`` so only cached files are used). Any failure becomes one
    ``GeraError`` (see ``load_error``).

    ``needs_hub`` (default True): probe the Hub first. False for local folders and files.
    ``repo_id``: the Hub repo the load downloads from; when the Hub is reachable its size is
    checked first (``check_download_size``, with ``safetensors_only``).
    """
    local_only = needs_hub and not hub_reachable()
    try:
        if repo_id and needs_hub and not local_only:
            check_download_size(encoder_name, repo_id, safetensors_only=safetensors_only)
        yield local_only
    except GeraError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported as one clear error
        raise load_error(encoder_name, source, exc, fix, local_only) from None


def revision(source: str, model) -> str:
    """What pins a transformers model's weights, for the cache key: the files of a local folder,
    else the Hub commit it was loaded from."""
    if is_local(source):
        return f"files={fingerprint(source)}"
    return f"rev={getattr(model.config, '_commit_hash', None) or 'unknown'}"


def hf_access(encoder_name: str, source: str) -> AbstractContextManager[bool]:
    """``hub_access`` for a transformers model id or folder ``source``: a Hub id gets its size
    checked (safetensors only) before any download; yields ``local_only``."""
    local = is_local(source)
    if not local and (source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source):
        raise GeraError(f"Encoder '{encoder_name}': there is no folder {source}. Give the path of a "
                        "folder holding a transformers model (config.json and weights), or a "
                        "Hugging Face model id like 'org/name'.")
    return hub_access(encoder_name, f"'{source}'", needs_hub=not local,
                      fix=f"run `hf download {source} --local-dir DIR` where the Hub is reachable, "
                          "copy DIR here and use 'hf:DIR'",
                      repo_id=None if local else source, safetensors_only=True)
