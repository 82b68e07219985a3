"""Local geometry of a frozen embedding space, in numpy: unit vectors, the kNN graph, the heat
kernel's bandwidth. (The kernels and diffusion operators on tensors are in ``gera.losses``.)
"""
from __future__ import annotations

import numpy as np

from gera.errors import GeraError

KERNELS = ("heat", "inverse", "linear", "squared")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def knn(x: np.ndarray, k: int, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Cosine k nearest neighbours of every row of ``x`` among the rows of ``x``, self excluded.

    Returns ``(indices, similarities)``, both ``(n, k)``, nearest first. faiss (exact inner product)
    on CPU; chunked ``torch.topk`` on a GPU, where faiss-cpu would be the bottleneck.
    """
    x = l2_normalize(x)
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if str(device).startswith("cuda"):
        return _knn_torch(x, k, str(device))
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k + 1)
    return _drop_self(idx, sims, k)


def _knn_torch(x: np.ndarray, k: int, device: str,
               chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    import torch  # only on a GPU, where faiss-cpu would be the bottleneck

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
