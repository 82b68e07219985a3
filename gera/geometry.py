"""Local geometry of a frozen embedding space: kNN graph, kernels, diffusion operators.

The original spaces never change during training, so their kNN graph and heat-kernel bandwidth are
computed once (``NeighbourGraph``); each step only samples neighbourhoods from it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

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
    if device.startswith("cuda"):
        return _knn_torch(torch.from_numpy(x).to(device), k)
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k + 1)
    return _drop_self(idx, sims, k)


def _knn_torch(x: torch.Tensor, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
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


def pairwise_sq_dist(u: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances within each neighbourhood: ``(..., m, d) → (..., m, m)``.

    For unit vectors ``‖u-v‖² = 2 - 2 cos``, which is cheaper and exactly symmetric.
    """
    return (2.0 - 2.0 * (u @ u.transpose(-1, -2))).clamp_min(0.0)


def kernel_matrix(u: torch.Tensor, kernel: str = "heat", eps: Optional[float] = None) -> torch.Tensor:
    """Kernel on the unit vectors of each neighbourhood, ``(..., m, d) → (..., m, m)``.

    ``heat``: exp(-‖u-v‖²/ε); ``inverse``: 1/(1+‖u-v‖²/ε); ``linear``: (1+cos)/2;
    ``squared``: ((1+cos)/2)². ``eps`` (heat, inverse) must come from the ORIGINAL space and be
    shared by both spaces: re-estimating it from the aligned space hides a global shrink.
    """
    if kernel in ("heat", "inverse"):
        if eps is None:
            raise ValueError(f"kernel {kernel!r} needs the bandwidth eps")
        d2 = pairwise_sq_dist(u)
        return torch.exp(-d2 / eps) if kernel == "heat" else 1.0 / (1.0 + d2 / eps)
    cos_sim = u @ u.transpose(-1, -2)
    if kernel == "linear":
        return (1.0 + cos_sim) / 2.0
    if kernel == "squared":
        return ((1.0 + cos_sim) / 2.0) ** 2
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")


def diffusion_operator(w: torch.Tensor) -> torch.Tensor:
    """Row-normalise a kernel matrix: ``T = D⁻¹ W`` (every row sums to 1)."""
    return w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)


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


class NeighbourGraph:
    """The kNN graph of one modality's pool (paired ∪ unpaired points), in the original space.

    Parameters
    ----------
    x : (n, d) pool embeddings (any scale; L2-normalised here).
    k : neighbours sampled per anchor per step (default 10).
    k_pool : the candidates they are sampled from: each point's ``k_pool`` nearest (default 50).
    device : where the kNN search runs (faiss on CPU, torch on CUDA).
    """

    def __init__(self, x: np.ndarray, k: int = 10, k_pool: int = 50, device: str = "cpu"):
        n = len(x)
        self.k_pool = max(1, min(k_pool, n - 1))
        self.k = max(1, min(k, self.k_pool))
        self.neighbours, sims = knn(x, self.k_pool, device=device)
        self.eps = heat_bandwidth(sims, self.k)
        self._on_device = {}  # device -> the neighbour table as a tensor there

    def _table(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = torch.from_numpy(self.neighbours).to(device)
        return self._on_device[key]

    def sample(self, anchors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Neighbourhoods ``{i} ∪ (k of i's k_pool nearest)``: ``(m,) → (m, k+1)`` pool indices."""
        nbrs = self._table(anchors.device)[anchors]
        if self.k < self.k_pool:
            pick = torch.rand(nbrs.shape, generator=generator, device="cpu").argsort(dim=1)[:, :self.k]
            nbrs = nbrs.gather(1, pick.to(anchors.device))
        return torch.cat([anchors[:, None], nbrs], dim=1)

