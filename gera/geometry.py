"""Local geometry of a frozen embedding space, in numpy: unit vectors, the kNN graph, the heat
kernel's bandwidth. (The kernels and diffusion operators on tensors are in ``gera.losses``.)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from gera.errors import GeraError

KERNELS = ("heat", "inverse", "linear", "squared")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


# Above this many points the CPU kNN graph is approximate (IVF-Flat, below): the exact search
# costs n² · d (1M points of 384 dims: ~4·10¹⁴ multiply-adds, hours on 2 cores). Measured recall@50
# of the approximate graph against the exact one: see ``python -m gera bench --scale``.
APPROX_THRESHOLD = 50_000
# IVF-Flat: nlist ≈ 4·√n inverted lists (k-means cells), nprobe of them searched per query, the
# quantiser trained on at most TRAIN_PER_LIST points per list (a seeded sample).
NPROBE = 8
TRAIN_PER_LIST = 16


def knn(x: np.ndarray, k: int, device: str = "cpu", exact: Optional[bool] = None,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k nearest neighbours of every row of ``x`` among the rows of ``x``, self excluded.

    Returns ``(indices, similarities)``, both ``(n, k)``, nearest first. Exact up to
    ``APPROX_THRESHOLD`` points: chunked matrix products and ``torch.topk``, on the GPU where
    there is one; approximate above it on the CPU (``exact=None``; True/False forces either): a
    faiss IVF-Flat index (``approximate_knn``), deterministic for ``seed``.
    """
    x = l2_normalize(x)
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if str(device).startswith("cuda"):
        return _knn_torch(x, k, str(device))
    if exact is None:
        exact = n <= APPROX_THRESHOLD
    if not exact:
        return approximate_knn(x, k, seed=seed)
    # torch (MKL) rather than faiss' IndexFlatIP: on one CPU thread the graph of 5,180 points of
    # 1,280 dims took 4.6 s with faiss and 1.1 s this way (the same neighbours but for ties).
    return _knn_torch(x, k, "cpu")


def ivf_lists(n: int) -> int:
    """The number of IVF lists for ``n`` points: ≈ 4·√n, a power of two, within [16, 65536]."""
    return int(min(65536, max(16, 2 ** round(np.log2(4 * np.sqrt(max(n, 1)))))))


def approximate_knn(x: np.ndarray, k: int, nlist: Optional[int] = None, nprobe: int = NPROBE,
                    seed: int = 0, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Approximate cosine kNN of the unit rows of ``x`` (self excluded), as ``knn``.

    faiss ``IndexIVFFlat`` on inner product: a k-means quantiser (``nlist`` cells, default
    ``ivf_lists(n)``) trained on a ``seed``-ed sample of at most ``TRAIN_PER_LIST · nlist`` points
    with the k-means seed set too, so the graph is the same for the same ``x`` and ``seed``;
    each query scans the ``nprobe`` nearest cells exactly. A row that finds fewer than k + 1
    candidates in its cells (a nearly empty neighbourhood) is searched exactly instead.
    """
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned, search_preassigned

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    nlist = min(nlist or ivf_lists(n), max(1, n // TRAIN_PER_LIST))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = 8
    # The sample below is all k-means sees: faiss neither subsamples it again nor warns about it.
    index.cp.max_points_per_centroid = TRAIN_PER_LIST
    index.cp.min_points_per_centroid = 1
    n_train = min(n, TRAIN_PER_LIST * nlist)
    sample = np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))
    index.train(x[sample])
    index.nprobe = nprobe = min(nprobe, nlist)
    # Each point's nprobe nearest cells, found once: the first is the cell it is added to, all
    # of them are the cells its own query scans (faiss would run the quantiser twice).
    cells = np.empty((n, nprobe), np.int64)
    for start in range(0, n, chunk):
        cells[start:start + chunk] = index.quantizer.search(x[start:start + chunk], nprobe)[1]
    add_preassigned(index, x, np.ascontiguousarray(cells[:, 0]))
    idx = np.empty((n, k + 1), np.int64)
    sims = np.empty((n, k + 1), np.float32)
    for start in range(0, n, chunk):  # bounded temporary memory in faiss's result heaps
        part = slice(start, start + chunk)
        sims[part], idx[part] = search_preassigned(index, x[part], k + 1, cells[part])
    short = np.flatnonzero((idx < 0).any(axis=1))
    if len(short):
        flat = faiss.IndexFlatIP(d)
        flat.add(x)
        sims[short], idx[short] = flat.search(x[short], k + 1)
    return _drop_self(idx, sims, k)


def _knn_torch(x: np.ndarray, k: int, device: str,
               chunk_values: int = 2 ** 26) -> tuple[np.ndarray, np.ndarray]:
    import torch

    # ≤ 256 MiB of similarities at once in host memory; a GPU takes 4096 rows a chunk
    chunk = 4096 if device != "cpu" else max(1, min(4096, chunk_values // max(len(x), 1)))
    x = torch.from_numpy(x).to(device)
    idx_parts, sim_parts = [], []
    for start in range(0, len(x), chunk):
        sims, idx = (x[start:start + chunk] @ x.T).topk(k + 1, dim=1)
        idx_parts.append(idx.cpu().numpy())
        sim_parts.append(sims.cpu().numpy())
    return _drop_self(np.concatenate(idx_parts), np.concatenate(sim_parts), k)


def _drop_self(idx: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    # Duplicated points can push "self" out of first place, so remove it by identity, not position.
    n = len(idx)
    not_self = idx != np.arange(n)[:, None]
    # Keep the first k non-self entries of each row (rows always have ≥ k of them).
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
    return (np.take_along_axis(idx, order, 1).astype(np.int64),
            np.take_along_axis(sims, order, 1).astype(np.float32))


def heat_bandwidth(nbr_sims: np.ndarray, k: int) -> float:
    """ε = median squared distance to the k-th neighbour, from cosine similarities of unit vectors.

    Exact copies (distance 0) are left out: they say nothing about the scale of a neighbourhood.
    """
    kth = 2.0 - 2.0 * nbr_sims[:, min(k, nbr_sims.shape[1]) - 1].astype(np.float64)
    kth = kth[kth > 1e-9]
    if len(kth) == 0:
        raise GeraError("Every point's neighbours coincide with it (the pool holds copies of a few "
                        "vectors), so no kernel bandwidth exists. Use more distinct items.")
    return float(np.median(kth))


def modality_gap(za: np.ndarray, zb: np.ndarray) -> float:
    """Distance between the two modalities' mean unit vectors in a shared space: 0 when both
    clouds share a centre; the aligned outputs of two heads usually sit in different cones."""
    return float(np.linalg.norm(l2_normalize(za).mean(0) - l2_normalize(zb).mean(0)))


def centre_modalities(za: np.ndarray, zb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each modality's points minus that modality's mean, re-normalised to unit length: the
    modality gap removed, so partners can be seen next to each other. For looking only:
    retrieval and every metric score the aligned space as it is (a query's ranking depends on
    its similarities relative to one another, which the gap leaves intact)."""
    za, zb = l2_normalize(za), l2_normalize(zb)
    return l2_normalize(za - za.mean(0)), l2_normalize(zb - zb.mean(0))
