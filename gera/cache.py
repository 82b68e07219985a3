"""An on-disk embedding cache: each item is embedded once per encoder, ever.

Layout: ``<root>/<encoder name>-<hash of cache_key>/`` holds ``encoder.json`` (the cache key in
clear) and ``chunk-*.npz`` files, each with ``keys`` (item keys, unicode) and ``emb`` (float32
rows). A chunk is written whole to a temp file and renamed into place, so readers only ever see
complete chunks, and an interrupted run keeps every chunk it finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from gera.data.base import ItemSet
from gera.encoders.base import Encoder, Progress
from gera.errors import GeraError
from gera.io import atomic_write
from gera.paths import embeddings_root

CHUNK_ITEMS = 1024  # items embedded and written per chunk: bounds lost work and index size
# Items loaded at once, at most (fewer when the batch is smaller): 128 images of at most 1024 px
# (gera.images.MAX_SIDE) hold about 300 MB.
LOAD_ITEMS = 128
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _write_atomic(path: Path, write: Callable[[object], None]) -> None:
    """``atomic_write``, with an ``OSError`` (disk full, read-only, permissions) turned into a
    ``GeraError`` that names the cache folder and the fix."""
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise GeraError(
            f"Could not write to the embedding cache folder {path.parent} ({exc.strerror or exc})."
            " Free some disk space there, or point the cache elsewhere with the environment "
            "variable GERA_CACHE_DIR.") from exc


class _EncoderStore:
    """One encoder's folder, with an in-memory index: item key → (chunk file name, row).

    Shared by every ``EmbeddingCache`` of the process (see ``_STORES``)."""

    def __init__(self, folder: Path, encoder: Encoder):
        self.folder, self.dim = folder, encoder.dim
        self._info = {"cache_key": encoder.cache_key, "name": encoder.name,
                      "modality": encoder.modality, "dim": encoder.dim}
        self.index: dict[str, tuple[str, int]] = {}
        self._scanned: set[str] = set()

    def refresh(self) -> None:
        """Index chunks not seen yet (this process's first call, or written by another process);
        forget chunks that were deleted (someone cleared the cache)."""
        present = {path.name for path in self.folder.glob("chunk-*.npz")}
        vanished = self._scanned - present
        if vanished:
            self.index = {key: loc for key, loc in self.index.items() if loc[0] not in vanished}
            self._scanned -= vanished
        for name in sorted(present - self._scanned):
            self._scanned.add(name)
            try:
                with np.load(self.folder / name, allow_pickle=False) as npz:
                    keys = npz["keys"]
                if keys.ndim != 1:
                    raise ValueError(f"keys have shape {keys.shape}")
            except _UNREADABLE as exc:
                self._discard(name, exc)
                continue
            self.index.update((str(key), (name, row)) for row, key in enumerate(keys))

    def read(self, chunk: str) -> Optional[np.ndarray]:
        """The chunk's rows, or None if it turned out corrupt (then it is dropped from the index)."""
        try:
            with np.load(self.folder / chunk, allow_pickle=False) as npz:
                keys, emb = npz["keys"], npz["emb"]
            if emb.dtype != np.float32 or emb.shape != (len(keys), self.dim):
                raise ValueError(f"rows have shape {emb.shape} and dtype {emb.dtype}, expected "
                                 f"({len(keys)}, {self.dim}) float32")
        except _UNREADABLE as exc:
            self._discard(chunk, exc)
            return None
        return emb

    def write(self, keys: list[str], emb: np.ndarray) -> None:
        self._ensure_folder()
        name = f"chunk-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        _write_atomic(self.folder / name,
                      lambda f: np.savez(f, keys=np.asarray(keys, dtype=str), emb=emb))
        self._scanned.add(name)
        self.index.update((key, (name, row)) for row, key in enumerate(keys))

    def _ensure_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GeraError(f"Could not create the embedding cache folder {self.folder} "
                            f"({exc.strerror or exc}). Point the cache to a writable folder with "
                            "the environment variable GERA_CACHE_DIR.") from exc
        meta = self.folder / "encoder.json"
        if not meta.exists():
            _write_atomic(meta, lambda f: f.write(json.dumps(self._info, indent=1).encode()))

    def _discard(self, chunk: str, exc: BaseException) -> None:
        warnings.warn(f"Skipping corrupt embedding cache file {self.folder / chunk} ({exc}); its "
                      "items will be embedded again.", RuntimeWarning, stacklevel=3)
        self.index = {key: loc for key, loc in self.index.items() if loc[0] != chunk}
        # A corrupt chunk is useless; removing it stops every later run from warning again.
        (self.folder / chunk).unlink(missing_ok=True)


_STORES: dict[Path, _EncoderStore] = {}  # per process: each folder's chunks are indexed once


class EmbeddingCache:
    """Embeddings on disk, keyed by ``(encoder.cache_key, item key)``.

    ``root`` (default None: ``gera.paths.embeddings_root()``) is the cache folder; ``chunk_items``
    (default ``CHUNK_ITEMS``) how many missing items are embedded and written per chunk file.
    Items are loaded ``batch_size`` (at most ``LOAD_ITEMS``) at a time.
    """

    def __init__(self, root: Path | str | None = None, chunk_items: int = CHUNK_ITEMS):
        self.root = Path(root).expanduser() if root is not None else embeddings_root()
        self.chunk_items = chunk_items

    def folder(self, encoder: Encoder) -> Path:
        """The folder holding ``encoder``'s embeddings."""
        digest = hashlib.sha256(encoder.cache_key.encode()).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name)[:48]
        return self.root / f"{readable}-{digest}"

    def _store(self, encoder: Encoder) -> _EncoderStore:
        folder = self.folder(encoder).resolve()
        store = _STORES.get(folder)
        if store is None:
            store = _STORES[folder] = _EncoderStore(folder, encoder)
        store.refresh()
        return store

    def count(self, encoder: Encoder) -> int:
        """How many items of ``encoder`` are cached."""
        return len(self._store(encoder).index)

    def embed(self, encoder: Encoder, items: ItemSet, indices: np.ndarray, batch_size: int = 64,
              progress: Progress = None) -> np.ndarray:
        """Embeddings of ``items`` at ``indices``: float32 ``(len(indices), encoder.dim)``, rows in
        the order of ``indices``. Only items not cached yet are loaded and embedded.

        ``batch_size`` (default 64) is passed to ``encoder.embed``. ``progress(done, total)``
        (default None: a tqdm bar) counts the items being embedded, after every batch.
        """
        if items.modality != encoder.modality:
            raise GeraError(f"Encoder '{encoder.name}' embeds {encoder.modality}, but these items are "
                            f"{items.modality}. Pick a {items.modality} encoder for them.")
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        keys = [items.keys[i] for i in indices]
        out = np.empty((len(indices), encoder.dim), dtype=np.float32)
        store = self._store(encoder)

        by_chunk: dict[str, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            location = store.index.get(key)
            if location is not None:
                by_chunk.setdefault(location[0], []).append((position, location[1]))
        filled = np.zeros(len(indices), dtype=bool)
        for chunk, entries in by_chunk.items():
            rows = store.read(chunk)
            if rows is not None:
                positions, chunk_rows = np.asarray(entries).T
                out[positions] = rows[chunk_rows]
                filled[positions] = True

        missing: dict[str, list[int]] = {}  # key → its positions in out (each key embedded once)
        for position in np.flatnonzero(~filled):
            missing.setdefault(keys[position], []).append(int(position))
        if missing:
            self._embed_missing(encoder, items, indices, missing, out, batch_size, progress, store)
        return out

    @staticmethod
    def _embed_part(encoder: Encoder, items: ItemSet, indices: list[int], batch_size: int,
                    progress: Progress) -> np.ndarray:
        emb = encoder.embed(items.load(indices), batch_size=batch_size, progress=progress)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.shape != (len(indices), encoder.dim):
            raise GeraError(f"Encoder '{encoder.name}' returned embeddings of shape {emb.shape} for "
                            f"{len(indices)} items; expected ({len(indices)}, {encoder.dim}). This "
                            "is a bug in the encoder.")
        return emb

    def _embed_missing(self, encoder: Encoder, items: ItemSet, indices: np.ndarray,
                       missing: dict[str, list[int]], out: np.ndarray, batch_size: int,
                       progress: Progress, store: _EncoderStore) -> None:
        """Load, embed, write and fill into ``out`` the ``missing`` keys, one chunk at a time."""
        todo = list(missing.items())
        total = len(todo)
        bar = None
        if progress is None:
            bar = tqdm(total=total, desc=f"Embedding with {encoder.name}", unit="item", disable=None)
            progress = lambda done, _total: bar.update(done - bar.n)  # noqa: E731
        # Items are loaded a batch at a time, not a chunk at a time: a chunk of 1,024 photos
        # held at once would take gigabytes, a batch is what the encoder holds anyway.
        load_items = max(1, min(batch_size, LOAD_ITEMS))
        try:
            for start in range(0, total, self.chunk_items):
                group = todo[start:start + self.chunk_items]
                emb = np.empty((len(group), encoder.dim), dtype=np.float32)
                for offset in range(0, len(group), load_items):
                    part = group[offset:offset + load_items]
                    emb[offset:offset + len(part)] = self._embed_part(
                        encoder, items, [int(indices[positions[0]]) for _, positions in part],
                        batch_size, lambda done, _n, base=start + offset: progress(base + done, total))
                store.write([key for key, _ in group], emb)
                for row, (_, positions) in enumerate(group):
                    out[positions] = emb[row]
        finally:
            if bar is not None:
                bar.close()
