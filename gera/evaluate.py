"""Evaluation: zero-shot classification, cross-modal retrieval, neighbourhood preservation, and a
supervised ceiling. Functions take an ``Alignment`` and RAW encoder embeddings."""
from __future__ import annotations

from typing import Optional

import numpy as np

from gera.alignments import Alignment, Standardizer
from gera.geometry import l2_normalize
from gera.memo import memoize_arrays


def class_prototypes(alignment: Alignment, prompt_emb: np.ndarray) -> np.ndarray:
    """``prompt_emb``: (C, T, d_B) raw embeddings of T templates per class → (C, dim) unit vectors:
    the mean of each class's aligned prompt embeddings (CLIP's prompt ensembling)."""
    c, t, d = prompt_emb.shape
    z = alignment.embed_b(prompt_emb.reshape(c * t, d)).reshape(c, t, -1)
    return l2_normalize(z.mean(1))


def ranks(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per row, how many WRONG candidates score at least as high as the best correct one.

    Ties count against the query, and NaN scores count as the worst possible, so a collapsed
    embedding (every score equal) ranks last instead of first.
    """
    scores = np.where(np.isnan(scores), -np.inf, scores)
    best_correct = np.where(correct, scores, -np.inf).max(1)
    return ((scores >= best_correct[:, None]) & ~correct).sum(1)


def mean_reciprocal_rank(scores: np.ndarray, correct: np.ndarray) -> float:
    return float((1.0 / (1.0 + ranks(scores, correct))).mean())


def zero_shot_scores(alignment: Alignment, images: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
    """(n, C) similarities of each A item to each class prototype."""
    return alignment.embed_a(images) @ class_prototypes(alignment, prompt_emb).T


def zero_shot(alignment: Alignment, images: np.ndarray, labels: np.ndarray,
              prompt_emb: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy of predicting each A item's class by the nearest class prototype."""
    scores = zero_shot_scores(alignment, images, prompt_emb)
    rank = ranks(scores, np.eye(scores.shape[1], dtype=bool)[labels])
    return {f"zero_shot_top{k}": float((rank < k).mean()) for k in ks if k <= scores.shape[1]}


def distinct_matches(a_ids: np.ndarray, b_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct items of a list of pairs: ``rows_a``/``rows_b`` pick one pair row per distinct
    A/B item, and ``correct[i, j]`` says distinct A item i is paired with distinct B item j (an
    image with two captions, or a transcript said in two recordings, has two right answers)."""
    _, rows_a, inv_a = np.unique(np.asarray(a_ids), return_index=True, return_inverse=True)
    _, rows_b, inv_b = np.unique(np.asarray(b_ids), return_index=True, return_inverse=True)
    correct = np.zeros((len(rows_a), len(rows_b)), dtype=bool)
    correct[inv_a.reshape(-1), inv_b.reshape(-1)] = True
    return rows_a, rows_b, correct


def retrieval(alignment: Alignment, a: np.ndarray, b: np.ndarray,
              b_ids: Optional[np.ndarray] = None, a_ids: Optional[np.ndarray] = None,
              ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both directions on held-out pairs (row i of ``a`` ↔ row i of ``b``).

    ``a_ids``/``b_ids`` name the items (default: every row its own item). Each distinct A item
    queries the distinct B items and vice versa, so a transcript said in two recordings is one
    candidate, not two, and counts as one query; any partner of the query is a right answer.
    """
    n = len(a)
    rows_a, rows_b, correct = distinct_matches(np.arange(n) if a_ids is None else a_ids,
                                               np.arange(n) if b_ids is None else b_ids)
    sims = alignment.embed_a(a[rows_a]) @ alignment.embed_b(b[rows_b]).T
    out = {}
    for direction, s, right in (("a2b", sims, correct), ("b2a", sims.T, correct.T)):
        rank = ranks(s, right)
        for k in ks:
            out[f"recall@{k}_{direction}"] = float((rank < k).mean())
    return out


def knn_jaccard(original: np.ndarray, aligned: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-point Jaccard overlap of the k-NN sets in the original and the aligned space (cosine)."""
    k = min(k, len(original) - 1)
    return _jaccard(original_ranking(l2_normalize(original))[:, :k], _aligned_knn(aligned, k))


def trustworthiness(original: np.ndarray, aligned: np.ndarray, k: int = 10,
                    max_points: int = 2000, seed: int = 0) -> float:
    """Trustworthiness (Venna & Kaski; sklearn's definition, cosine in the original space) on a
    fixed random subset of at most ``max_points``: how far, in original-space rank, each point's
    aligned-space neighbours were. 1 = no aligned neighbour is a stranger."""
    idx = _subset(len(original), max_points, seed)
    k = min(k, (len(idx) - 1) // 2)
    return _trustworthiness(original_ranking(l2_normalize(original[idx])),
                            _aligned_knn(aligned[idx], k))


def neighbourhood_metrics(alignment: Alignment, a: np.ndarray, b: np.ndarray, k: int = 10,
                          max_points: int = 2000, seed: int = 0) -> dict[str, float]:
    """kNN Jaccard@k and trustworthiness per modality, original (standardised) vs aligned.

    The original space is the evaluated points centred by their own mean and L2-normalised: the
    same reference for every method, whatever its own preprocessing (ASIF and CCA have no heads).
    Both metrics read one ranking of the original space, computed once for all methods.
    """
    out = {}
    for side, x, embed in (("a", a, alignment.embed_a), ("b", b, alignment.embed_b)):
        x = np.asarray(x)[_subset(len(x), max_points, seed)]
        if len(x) < 4:
            continue
        order = original_ranking(Standardizer.fit(x)(x))
        k_side = min(k, (len(x) - 1) // 2)
        aligned_nn = _aligned_knn(embed(x), max(k, k_side))
        out[f"knn_jaccard_{side}"] = float(_jaccard(order[:, :k], aligned_nn[:, :k]).mean())
        out[f"trustworthiness_{side}"] = _trustworthiness(order, aligned_nn[:, :k_side])
    return out


@memoize_arrays(maxsize=8)
def original_ranking(x: np.ndarray) -> np.ndarray:
    """Every other point, nearest first, for each row of ``x`` (unit vectors; cosine): ``(n, n-1)``.
    Kept: every method of a comparison is evaluated on the same points."""
    dist = 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(dist, np.inf)
    return np.argsort(dist, axis=1, kind="stable")[:, :-1].astype(np.int32)


def _aligned_knn(z: np.ndarray, k: int) -> np.ndarray:
    """The k nearest rows of each row of ``z`` (unit vectors), self excluded, nearest first."""
    sims = np.asarray(z, dtype=np.float32) @ np.asarray(z, dtype=np.float32).T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(z) - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), 1, kind="stable"), 1)


def _jaccard(nn_a: np.ndarray, nn_b: np.ndarray) -> np.ndarray:
    k = nn_a.shape[1]
    inter = (nn_a[:, :, None] == nn_b[:, None, :]).any(2).sum(1)
    return inter / (2 * k - inter)


def _trustworthiness(order: np.ndarray, aligned_nn: np.ndarray) -> float:
    n, k = aligned_nn.shape
    rank = np.empty((n, n), dtype=np.int32)  # rank[i, j]: j's place among i's original neighbours
    rank[np.arange(n)[:, None], order] = np.arange(1, n, dtype=np.int32)
    penalties = rank[np.arange(n)[:, None], aligned_nn] - k
    t = penalties[penalties > 0].sum(dtype=np.float64)
    return float(1.0 - t * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray) -> float:
    """Supervised ceiling: logistic regression on standardised features, all labels used.

    On one BLAS thread: L-BFGS on a few thousand rows is latency-bound, and extra threads only
    spin (10× slower on a busy 2-core machine)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    std = Standardizer.fit(train_x)
    with threadpool_limits(1):
        clf = LogisticRegression(max_iter=1000, C=10.0).fit(std(train_x), train_y)
    return float(clf.score(std(test_x), test_y))


def _subset(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
