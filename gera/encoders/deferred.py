"""An encoder that loads its model only when something must be embedded.

A comparison whose embeddings are all cached needs an encoder's identity (name, dimension,
cache key) but never its weights; loading MiniLM and MobileNet costs ~10–15 s per process, paid
again by every worker process of a comparison. ``DeferredEncoder`` answers the identity from a
descriptor the embedding cache keeps (written the first time the real encoder is loaded) and
loads the model on the first ``embed``.

A descriptor is only trusted for the same code and the same weights: its file name carries a
stamp of the encoder modules' source and of the weight package's files, so editing an encoder
(a new ``version`` or preprocessing) or reinstalling its weights makes the next run load the
model and write a new descriptor.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from gera.encoders.base import Encoder, Progress
from gera.errors import GeraError
from gera.io import atomic_write

_IDENTITY = ("name", "modality", "dim", "preprocessing", "version", "cache_key")


class DeferredEncoder(Encoder):
    """``load()``'s encoder, loaded on first ``embed`` (or on any attribute the descriptor in
    ``folder`` does not hold). ``key`` names the descriptor: the same for the same encoder,
    code and weights."""

    def __init__(self, key: str, load: Callable[[], Encoder], folder: Path):
        self._key, self._load, self._path = key, load, folder / f"{key}.json"
        self._real: Optional[Encoder] = None
        self._identity = _read(self._path)
        self._lock = threading.Lock()  # two app sessions asking at once load the model once

    def loaded(self) -> Encoder:
        """The real encoder (loading it now if need be); records its descriptor."""
        with self._lock:
            return self._load_once()

    def _load_once(self) -> Encoder:
        if self._real is None:
            real = self._load()
            identity = {field: getattr(real, field) for field in _IDENTITY}
            if self._identity is not None and self._identity != identity:
                raise GeraError(f"Encoder '{real.name}' no longer matches its cached descriptor "
                                f"{self._path}; delete that file and run again.")
            if self._identity is None:
                try:
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(self._path, lambda f: f.write(json.dumps(identity).encode()))
                except OSError:
                    pass  # a read-only or full cache only costs the next run a model load
            self._real, self._identity = real, identity
        return self._real

    def _field(self, field: str):
        return (self._identity if self._identity is not None else self._describe())[field]

    def _describe(self) -> dict:
        self.loaded()
        return self._identity

    name = property(lambda self: self._field("name"))
    modality = property(lambda self: self._field("modality"))
    dim = property(lambda self: self._field("dim"))
    preprocessing = property(lambda self: self._field("preprocessing"))
    version = property(lambda self: self._field("version"))
    cache_key = property(lambda self: self._field("cache_key"))

    @property
    def is_loaded(self) -> bool:
        return self._real is not None

    def embed(self, items: Sequence, batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        return self.loaded().embed(items, batch_size=batch_size, progress=progress)

    def __getattr__(self, attr: str):
        # Anything beyond the identity (``device``, ``module`` …) belongs to the real encoder.
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.loaded(), attr)


def _read(path: Path) -> Optional[dict]:
    try:
        identity = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(identity, dict) or set(identity) != set(_IDENTITY):
        return None
    return identity


def descriptor_key(name: str, modality: str, package: str, device: str) -> str:
    """The descriptor's name for builtin encoder ``name`` on ``device`` (a device type: what an
    encoder computes can depend on it): its spelling plus a stamp of the encoder code as this
    process imported it and of ``package`` (the module carrying its weights)."""
    digest = hashlib.sha256(f"{name}|{modality}|{device}|{_CODE_STAMP}|{package}|"
                            f"{_package_stamp(package)}".encode()).hexdigest()[:20]
    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:48]
    return f"{readable}-{digest}"


def _code_stamp() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py*")):  # sources, or compiled-only installs
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


# At import: the code this process runs, even if the files change while it runs (a long-lived app).
_CODE_STAMP = _code_stamp()


@lru_cache(maxsize=None)
def _package_stamp(package: str) -> str:
    """The weight package's files (names, sizes, modification times): a reinstall changes it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return "missing"
    root = Path(spec.origin).parent
    entries = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return hashlib.sha256(repr(entries).encode()).hexdigest()
