"""2-D UMAP projections of embedding clouds, on the faiss kNN graph, memoised by content.

UMAP's own neighbour search (NN-descent) is most of its cost on a few thousand points; the exact
cosine kNN from ``gera.geometry.knn`` (faiss) is faster here and is the same graph the
neighbourhood metrics use, so it is handed over as ``precomputed_knn``.

Projections are memoised by a hash of the input bytes and the settings: a pure function's cache,
shared by every session (the same shipped gallery projected twice is one computation).
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict

import numpy as np

from gera.geometry import knn, l2_normalize

N_NEIGHBOURS = 15
_MEMO: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMO_SIZE = 64  # projections of ≤ 6k points are ≤ 48 kB each
_LOCK = threading.Lock()


def knn_graph(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's form of the cosine kNN graph: each row starts with the point itself (distance 0),
    then its ``k`` nearest others, distances = 1 − cosine."""
    idx, sims = knn(x, k)
    n = len(x)
    indices = np.concatenate([np.arange(n)[:, None], idx], axis=1)
    distances = np.concatenate([np.zeros((n, 1), np.float32), np.clip(1.0 - sims, 0.0, None)],
                               axis=1)
    return indices, distances


def _key(x: np.ndarray, n_neighbours: int, seed: int) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    digest.update(f"{x.shape}|{n_neighbours}|{seed}".encode())
    return digest.hexdigest()


def umap_2d(x: np.ndarray, n_neighbours: int = N_NEIGHBOURS, seed: int = 0) -> np.ndarray:
    """``(n, d) → (n, 2)`` UMAP (cosine) of ``x``; the same input always gives the same output."""
    key = _key(x, n_neighbours, seed)
    with _LOCK:
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    coords = _project(l2_normalize(x), n_neighbours, seed)
    with _LOCK:
        _MEMO[key] = coords
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return coords


def _project(x: np.ndarray, n_neighbours: int, seed: int) -> np.ndarray:
    n = len(x)
    if n < 4:  # too few points for a neighbour graph: lay them out on a line
        return np.stack([np.arange(n, dtype=np.float32), np.zeros(n, np.float32)], axis=1)
    import umap  # imported on first use: it costs seconds, and start-up does not need it

    k = min(n_neighbours, n - 1)
    graph = knn_graph(x, k - 1)  # UMAP counts the point itself among its n_neighbors
    reducer = umap.UMAP(n_neighbors=k, metric="cosine", precomputed_knn=(*graph, None),
                        random_state=seed, init="spectral" if n > 2 * k else "random")
    with warnings.catch_warnings():
        # Without NN-descent's index UMAP cannot ``transform`` new points; the app never does.
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        # A fixed random_state makes UMAP single-threaded and says so: reproducible plots are
        # worth it, and the projection queue runs one at a time anyway.
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        return reducer.fit_transform(x).astype(np.float32)


def compile_umap() -> None:
    """Run UMAP once on a few random points: numba compiles its kernels on first use (seconds),
    which start-up's warm-up pays instead of the first user."""
    _project(l2_normalize(np.random.default_rng(0).standard_normal((64, 8))), N_NEIGHBOURS, 0)
