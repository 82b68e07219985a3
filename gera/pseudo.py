"""Confident pseudo-pairs: which unpaired A items to pair with which B items, in an aligned space.

numpy only. The scores are CSLS (cross-domain similarity local scaling, Conneau et al. 2018):
``2 cos(a, b) − r_A(a) − r_B(b)``, where ``r`` is a point's mean cosine to its ``k`` nearest of the
other side. It discounts hubs — the few captions close to everything — which raw cosine would
pair with most of the pool.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PseudoPairs:
    """Accepted pseudo-pairs, most confident first: row ``a[i]`` of the A candidates with row
    ``b[i]`` of the B candidates, at CSLS score ``score[i]``."""

    a: np.ndarray  # int64
    b: np.ndarray  # int64
    score: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.a)


def csls(za: np.ndarray, zb: np.ndarray, k: int = 10) -> np.ndarray:
    """CSLS scores ``(n_a, n_b)`` of unit vectors ``za`` (n_a, d) and ``zb`` (n_b, d)."""
    sims = za @ zb.T
    r_a = _mean_top(sims, min(k, sims.shape[1]))
    r_b = _mean_top(sims.T, min(k, sims.shape[0]))
    return 2 * sims - r_a[:, None] - r_b[None, :]


def _mean_top(sims: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        return np.zeros(len(sims), sims.dtype)
    return np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(1)


def mine(za: np.ndarray, zb: np.ndarray, per_b: int = 4, limit: int = 100, k: int = 10,
         mutual: bool = True) -> PseudoPairs:
    """Confident, balanced pseudo-pairs between A candidates ``za`` and B candidates ``zb``.

    Every A item proposes its best B item by CSLS. With ``mutual``, a proposal is kept only if the
    A item is also among that B item's ``per_b`` best A items (over ALL A candidates: mutual
    nearest neighbours when ``per_b`` = 1); without, each B item keeps its ``per_b`` best
    proposers. Either way no B item is used more than ``per_b`` times and no A item more than
    once. The ``limit`` highest-scoring survivors are returned, best first.
    """
    if len(za) == 0 or len(zb) == 0 or limit < 1 or per_b < 1:
        empty = np.zeros(0, np.int64)
        return PseudoPairs(empty, empty, np.zeros(0, np.float32))
    scores = csls(za, zb, k)
    best_b = scores.argmax(1)
    best = scores[np.arange(len(za)), best_b]
    if mutual:
        keep_per_b = min(per_b, len(za))
        top_a = np.argpartition(-scores, keep_per_b - 1, axis=0)[:keep_per_b]  # (per_b, n_b)
        in_top = np.zeros(scores.shape, bool)
        in_top[top_a, np.arange(scores.shape[1])[None, :]] = True
        accepted = np.flatnonzero(in_top[np.arange(len(za)), best_b])
    else:
        order = np.lexsort((-best, best_b))  # by B item, best proposer first
        rank = np.empty(len(za), np.int64)
        starts = np.searchsorted(best_b[order], best_b[order], side="left")
        rank[order] = np.arange(len(za)) - starts
        accepted = np.flatnonzero(rank < per_b)
    accepted = accepted[np.argsort(-best[accepted], kind="stable")][:limit]
    return PseudoPairs(accepted.astype(np.int64), best_b[accepted].astype(np.int64),
                       best[accepted].astype(np.float32))
