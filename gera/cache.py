"""An on-disk embedding cache: each item is embedded once per encoder, ever.

Layout: ``<root>/<encoder name>-<hash of cache_key>/`` holds ``encoder.json`` (the cache key in
clear) and ``chunk-*.npz`` files, each with ``keys`` (item keys, unicode) and ``emb`` (float32
rows). A chunk is written whole to a temp file and renamed into place, so readers only ever see
complete chunks, and an interrupted run keeps every chunk it finished.

Shared by many users at once (an app's sessions, several processes), so:

* each folder's in-memory index has a lock, and writing a chunk or evicting old ones holds an
  exclusive ``fcntl`` lock on ``<root>/.lock``, so concurrent writers never lose each other's
  entries or evict from a stale listing;
* a chunk is deleted only when it is really corrupt (it will not decode); a chunk that cannot be
  read for a passing reason (too many open files, permissions, a full disk) stays, and its items
  are embedded again for this call only;
* with ``max_bytes`` (``GERA_CACHE_MAX_BYTES``) the least recently used chunks, across all
  encoders, are deleted once the chunks exceed it (reading a chunk marks it used);
* an embedding with NaN or inf never enters the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
from tqdm.auto import tqdm

from gera.data.base import ItemSet
from gera.encoders.base import Encoder, Progress
from gera.errors import GeraError
from gera.io import atomic_write
from gera.paths import embeddings_root

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; the threading locks still hold
    fcntl = None

CHUNK_ITEMS = 1024  # items embedded and written per chunk: bounds lost work and index size
# Items loaded at once, at most (fewer when the batch is smaller): 128 images of at most 1024 px
# (gera.images.MAX_SIDE) hold about 300 MB.
LOAD_ITEMS = 128
LOCK_NAME = ".lock"
# What decoding a damaged chunk raises. An OSError is not among them: it says the file could not
# be read just now (EMFILE, EACCES, EIO …), not that it is bad.
_CORRUPT = (ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


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


@contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    """Hold the cache's exclusive cross-process lock (``fcntl.flock`` on ``<root>/.lock``) while
    chunks are written or evicted. Every open of the lock file is its own lock, so threads of one
    process exclude each other too."""
    if fcntl is None:
        yield
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_NAME, "ab")
    except OSError as exc:
        raise GeraError(f"Could not lock the embedding cache folder {root} ({exc.strerror or exc})."
                        " Point the cache to a writable folder with the environment variable "
                        "GERA_CACHE_DIR.") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def max_cache_bytes() -> Optional[int]:
    """``$GERA_CACHE_MAX_BYTES`` as a number of bytes, or None (unset or ``none``: no cap)."""
    text = os.environ.get("GERA_CACHE_MAX_BYTES", "").strip()
    if not text or text.lower() == "none":
        return None
    if not text.isascii() or not text.isdigit():
        raise GeraError(f"GERA_CACHE_MAX_BYTES={text!r} is not a whole number of bytes; set it "
                        "like 5000000000 (5 GB), or unset it for no cap.")
    return int(text)


class _EncoderStore:
    """One encoder's folder, with an in-memory index: item key → (chunk file name, row).

    Shared by every ``EmbeddingCache`` of the process (see ``_STORES``); ``lock`` guards the
    index, which several threads (app sessions) read and extend at once."""

    def __init__(self, folder: Path, encoder: Encoder):
        self.folder, self.dim = folder, encoder.dim
        self._info = {"cache_key": encoder.cache_key, "name": encoder.name,
                      "modality": encoder.modality, "dim": encoder.dim}
        self.index: dict[str, tuple[str, int]] = {}
        self._scanned: set[str] = set()
        self.lock = threading.RLock()

    def refresh(self) -> None:
        """Index chunks not seen yet (this process's first call, or written by another process);
        forget chunks that were deleted (someone cleared the cache, or evicted them)."""
        with self.lock:
            present = {path.name for path in self.folder.glob("chunk-*.npz")}
            self._forget(self._scanned - present)
            for name in sorted(present - self._scanned):
                try:
                    with np.load(self.folder / name, allow_pickle=False) as npz:
                        keys = npz["keys"]
                    if keys.ndim != 1:
                        raise ValueError(f"keys have shape {keys.shape}")
                except FileNotFoundError:
                    continue  # deleted since the listing
                except OSError as exc:
                    self._unreadable(name, exc)  # not marked scanned: tried again next time
                    continue
                except _CORRUPT as exc:
                    self._discard(name, exc)
                    continue
                self._scanned.add(name)
                self.index.update((str(key), (name, row)) for row, key in enumerate(keys))

    def read(self, chunk: str) -> Optional[np.ndarray]:
        """The chunk's rows, or None if it cannot be used now (corrupt chunks are also dropped
        from the index and deleted; vanished ones are forgotten)."""
        path = self.folder / chunk
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys, emb = npz["keys"], npz["emb"]
            if emb.dtype != np.float32 or emb.shape != (len(keys), self.dim):
                raise ValueError(f"rows have shape {emb.shape} and dtype {emb.dtype}, expected "
                                 f"({len(keys)}, {self.dim}) float32")
        except FileNotFoundError:
            with self.lock:
                self._forget({chunk})
            return None
        except OSError as exc:
            self._unreadable(chunk, exc)
            return None
        except _CORRUPT as exc:
            self._discard(chunk, exc)
            return None
        try:
            os.utime(path)  # "recently used", for least-recently-used eviction
        except OSError:
            pass  # a read-only cache still serves
        return emb

    def write(self, keys: list[str], emb: np.ndarray) -> None:
        if not np.isfinite(emb).all():  # the caller says which items; this is the last guard
            raise GeraError(f"Refusing to cache NaN or infinite embeddings in {self.folder}.")
        with self.lock:
            self._ensure_folder()
            name = f"chunk-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
            with cache_lock(self.folder.parent):
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

    def _forget(self, chunks: set[str]) -> None:
        """Drop deleted chunks from the index (caller holds ``lock``)."""
        if chunks:
            self.index = {key: loc for key, loc in self.index.items() if loc[0] not in chunks}
            self._scanned -= chunks

    def _unreadable(self, chunk: str, exc: OSError) -> None:
        warnings.warn(f"Could not read embedding cache file {self.folder / chunk} "
                      f"({exc.strerror or exc}); its items are embedded again this time, and the "
                      "file is kept.", RuntimeWarning, stacklevel=3)

    def _discard(self, chunk: str, exc: BaseException) -> None:
        warnings.warn(f"Skipping corrupt embedding cache file {self.folder / chunk} ({exc}); its "
                      "items will be embedded again.", RuntimeWarning, stacklevel=3)
        with self.lock:
            self._forget({chunk})
        # A corrupt chunk is useless; removing it stops every later run from warning again.
        (self.folder / chunk).unlink(missing_ok=True)


_STORES: dict[Path, _EncoderStore] = {}  # per process: each folder's chunks are indexed once
_STORES_LOCK = threading.Lock()


def forget(root: Path | str) -> None:
    """Drop the in-memory indexes of every cache folder under ``root`` (a cache that is being
    deleted, such as an app visitor's own): they would otherwise live as long as the process."""
    root = Path(root)
    with _STORES_LOCK:
        for folder in [f for f in _STORES if f == root or root in f.parents]:
            del _STORES[folder]


def evict(root: Path, max_bytes: int) -> list[Path]:
    """Delete the least recently used chunks under ``root`` (all encoders) until the chunks take
    at most ``max_bytes``; the deleted paths. Under the cache lock, from a fresh listing, so two
    processes never evict from a stale view. Stores notice deleted chunks on their next refresh."""
    removed = []
    with cache_lock(root):
        chunks = []
        for path in root.glob("*/chunk-*.npz"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            chunks.append((stat.st_mtime_ns, path.name, stat.st_size, path))
        total = sum(size for _, _, size, _ in chunks)
        for _, _, size, path in sorted(chunks):  # oldest use first; names order equal times
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
    return removed


class EmbeddingCache:
    """Embeddings on disk, keyed by ``(encoder.cache_key, item key)``.

    ``root`` (default None: ``gera.paths.embeddings_root()``) is the cache folder; ``chunk_items``
    (default ``CHUNK_ITEMS``) how many missing items are embedded and written per chunk file.
    Items are loaded ``batch_size`` (at most ``LOAD_ITEMS``) at a time. ``max_bytes`` (default
    None: ``$GERA_CACHE_MAX_BYTES``, unset = no cap) caps the chunks under ``root``: after each
    write the least recently used ones are deleted until they fit.
    """

    def __init__(self, root: Path | str | None = None, chunk_items: int = CHUNK_ITEMS,
                 max_bytes: Optional[int] = None):
        self.root = Path(root).expanduser() if root is not None else embeddings_root()
        self.chunk_items = chunk_items
        self.max_bytes = max_bytes if max_bytes is not None else max_cache_bytes()

    @property
    def descriptors(self) -> Path:
        """Where the identities of deferred encoders are kept (``gera.encoders.deferred``)."""
        return self.root / "encoder-descriptors"

    def folder(self, encoder: Encoder) -> Path:
        """The folder holding ``encoder``'s embeddings."""
        digest = hashlib.sha256(encoder.cache_key.encode()).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name)[:48]
        return self.root / f"{readable}-{digest}"

    def _store(self, encoder: Encoder) -> _EncoderStore:
        folder = self.folder(encoder).resolve()
        with _STORES_LOCK:
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
        self._check_modality(encoder, items)
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
            def fill_rows(group_keys: list[str], emb: np.ndarray) -> None:
                for key, row in zip(group_keys, emb):
                    out[missing[key]] = row
            todo = np.array([indices[positions[0]] for positions in missing.values()], np.int64)
            self._stream(encoder, items, todo, batch_size, progress, store, fill_rows)
        return out

    def fill(self, encoder: Encoder, items: ItemSet, indices: np.ndarray, batch_size: int = 64,
             progress: Progress = None) -> int:
        """Embed into the cache the items at ``indices`` that it does not hold yet; how many were
        embedded. Unlike ``embed`` nothing is returned, so memory stays bounded however many items
        there are: one chunk of embeddings (``chunk_items`` rows) and one load of items at a
        time, besides the cache's index of keys."""
        self._check_modality(encoder, items)
        store = self._store(encoder)
        todo = self.missing(encoder, items, indices)
        if len(todo):
            self._stream(encoder, items, todo, batch_size, progress, store)
        return len(todo)

    def missing(self, encoder: Encoder, items: ItemSet, indices: np.ndarray) -> np.ndarray:
        """The item indices among ``indices`` whose keys the cache does not hold (sorted, one per
        distinct key)."""
        index = self._store(encoder).index
        seen: set[str] = set()
        todo = []
        for i in np.unique(np.asarray(indices, dtype=np.int64).reshape(-1)).tolist():
            key = items.keys[i]
            if key not in index and key not in seen:
                seen.add(key)
                todo.append(i)
        return np.array(todo, np.int64)

    def put(self, encoder: Encoder, keys: list[str], emb: np.ndarray,
            what: Optional[list] = None) -> None:
        """Write one chunk: ``emb`` (float32 ``(len(keys), dim)``) under ``keys``. Rows with NaN or
        inf are left out and then refused with a ``GeraError`` naming the first (from ``what``,
        the items' indices, when given); the good rows are kept."""
        self._put(self._store(encoder), encoder, keys, emb, what)

    def _put(self, store: _EncoderStore, encoder: Encoder, keys: list[str], emb: np.ndarray,
             what: Optional[list] = None) -> None:
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.shape != (len(keys), encoder.dim):
            raise GeraError(f"Encoder '{encoder.name}' returned embeddings of shape {emb.shape} for "
                            f"{len(keys)} items; expected ({len(keys)}, {encoder.dim}). This "
                            "is a bug in the encoder.")
        finite = np.isfinite(emb).all(axis=1)
        if finite.any():  # the good rows are kept: their work is not lost
            store.write([key for key, ok in zip(keys, finite) if ok], emb[finite])
            if self.max_bytes is not None:
                evict(self.root, self.max_bytes)
        if not finite.all():
            bad = [w for w, ok in zip(what or keys, finite) if not ok]
            raise GeraError(
                f"Encoder '{encoder.name}' returned NaN or infinite values for "
                f"{len(bad)} item(s) (item {bad[0]} first); they were not cached. Such "
                "items (blank images, silent clips, empty texts) break some encoders: "
                "remove them, or pick another encoder.")

    @staticmethod
    def _check_modality(encoder: Encoder, items: ItemSet) -> None:
        if items.modality != encoder.modality:
            raise GeraError(f"Encoder '{encoder.name}' embeds {encoder.modality}, but these items are "
                            f"{items.modality}. Pick a {items.modality} encoder for them.")

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

    def _stream(self, encoder: Encoder, items: ItemSet, todo: np.ndarray, batch_size: int,
                progress: Progress, store: _EncoderStore,
                each_chunk: Optional[Callable[[list[str], np.ndarray], None]] = None) -> None:
        """Load, embed and write the items at ``todo`` (distinct keys, none cached), one chunk of
        ``chunk_items`` at a time; ``each_chunk(keys, emb)`` sees every chunk once written."""
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
                group = todo[start:start + self.chunk_items].tolist()
                emb = np.empty((len(group), encoder.dim), dtype=np.float32)
                for offset in range(0, len(group), load_items):
                    part = group[offset:offset + load_items]
                    emb[offset:offset + len(part)] = self._embed_part(
                        encoder, items, part, batch_size,
                        lambda done, _n, base=start + offset: progress(base + done, total))
                keys = [items.keys[i] for i in group]
                self._put(store, encoder, keys, emb, group)
                if each_chunk is not None:
                    each_chunk(keys, emb)
        finally:
            if bar is not None:
                bar.close()
