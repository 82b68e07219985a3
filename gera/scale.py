"""``python -m gera bench --scale``: GeRA on large unpaired pools, on synthetic embeddings.

Two figures per pool size (10k / 100k / 1M points by default):

* the kNN graph build (``gera.geometry.knn``): exact faiss search up to ``APPROX_THRESHOLD``
  points, the approximate IVF-Flat index above it, and the approximate graph's recall@k against
  the exact one on a seeded sample of query points;
* the mean training step of GeRA's geometric objective (``GeometricObjective`` through
  ``gera.train.train``), which must not grow with the pool: a step draws ``geo_batch`` anchors
  and looks up their neighbourhoods in the precomputed graph.

The embeddings are clustered unit vectors (``clustered_unit_vectors``), not a real encoder's.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Optional

import numpy as np

from gera.geometry import APPROX_THRESHOLD, approximate_knn, knn, l2_normalize

SIZES = (10_000, 100_000, 1_000_000)


def clustered_unit_vectors(n: int, d: int, seed: int = 0, per_cluster: int = 100,
                           latent: int = 32, spread: float = 0.5, noise: float = 0.1,
                           chunk: int = 100_000) -> np.ndarray:
    """``n`` float32 unit vectors in ``d`` dimensions with the local structure of real embeddings:
    a ``latent``-dimensional mixture (``n / per_cluster`` standard normal centres, each point its
    centre + ``spread`` × normal noise, so clusters overlap) mapped by a random linear map into
    ``d`` dimensions, plus ``noise`` there, renormalised. Built ``chunk`` rows at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // per_cluster), latent), dtype=np.float32)
    lift = rng.standard_normal((latent, d), dtype=np.float32) / np.float32(np.sqrt(latent))
    out = np.empty((n, d), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = centres[rng.integers(len(centres), size=m)]
        z += np.float32(spread) * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ lift + np.float32(noise) * rng.standard_normal((m, d), dtype=np.float32)
        out[start:start + m] = l2_normalize(x)
    return out


def recall_at_k(x: np.ndarray, approx_idx: np.ndarray, queries: np.ndarray) -> float:
    """Mean fraction of each query row's exact k nearest (self excluded) that ``approx_idx``
    found, the exact ones by brute force for the ``queries`` rows only."""
    import faiss

    k = approx_idx.shape[1]
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, exact = flat.search(x[queries], k + 1)
    hits = [len(np.intersect1d(row[row != q][:k], approx_idx[q])) for q, row in zip(queries, exact)]
    return float(np.mean(hits)) / k


def scale_costs(pool: np.ndarray, text_pool: int = 10_000, pairs: int = 1000, steps: int = 200,
                queries: int = 2000, seed: int = 0) -> dict:
    """One training job of GeRA (``GeometricObjective``, default ``TrainConfig`` on CPU) with
    ``pool`` as modality A's pool (its first ``pairs`` rows paired) and a fixed
    ``text_pool + pairs``-point B pool, timed in two parts:

    * ``prepare_s``: the objective's one-off work on the pools (both kNN graphs, the bandwidths),
      and ``recall`` of A's graph against exact search (for ``queries`` seeded rows; with the
      time that exact search took, scaled to all rows: ``exact_est_s``) where it is approximate;
    * ``step_ms``: the mean step between the first and the last progress report (step 10 and
      ``steps``).
    """
    from gera.objectives import GeometricObjective
    from gera.settings import TrainConfig
    from gera.train import train

    class Timed(GeometricObjective):
        def prepare(self, pool_a, *args):
            t0 = time.perf_counter()
            super().prepare(pool_a, *args)
            self.prepare_s, self.pool_a = time.perf_counter() - t0, pool_a

    cfg = replace(TrainConfig(), max_steps=steps, eval_every=10, device="cpu")
    b = clustered_unit_vectors(text_pool + pairs, 384, seed=seed + 1)
    marks: list[tuple[int, float]] = []
    objective = Timed.from_config(cfg)
    result = train(pool[:pairs], b[:pairs], pool[pairs:], b[pairs:], objective, cfg, seed=seed,
                   progress=lambda row: marks.append((row["step"], time.perf_counter())))
    (s0, t_first), (s1, t_last) = marks[0], marks[-1]
    n = len(objective.pool_a)
    out = {"n": n, "approximate": n > APPROX_THRESHOLD, "prepare_s": objective.prepare_s,
           "step_ms": 1000 * (t_last - t_first) / (s1 - s0),
           "points_per_step": result.points_per_step}
    if out["approximate"]:
        x = l2_normalize(objective.pool_a)  # the graph's own points (standardised, deduplicated)
        rows = np.sort(np.random.default_rng(seed).choice(n, min(queries, n), replace=False))
        t0 = time.perf_counter()
        out["recall"] = recall_at_k(x, objective.graphs[0].neighbours, rows)
        out["exact_est_s"] = (time.perf_counter() - t0) * n / len(rows)
    return out


def run(sizes=SIZES, dim: int = 384, steps: int = 200, queries: int = 2000,
        report: Callable[[str], None] = print) -> list[dict]:
    """The scale benchmark; prints one line per pool size as it goes and returns the rows."""
    import faiss
    import torch

    from gera.geometry import NPROBE, TRAIN_PER_LIST, ivf_lists
    from gera.settings import TrainConfig

    cfg = TrainConfig()
    report(f"scale — synthetic clustered unit vectors (clustered_unit_vectors): pool A of n points "
           f"in {dim} dims (the first 1,000 paired), pool B of 11,000 points in 384 dims; "
           f"kNN graph k_pool = {cfg.k_pool}; faiss {faiss.__version__} on "
           f"{faiss.omp_get_max_threads()} threads, torch on {cfg.cpu_threads}")
    report(f"kNN graph: exact (torch matmul + topk) up to {APPROX_THRESHOLD:,} points, above: IVF-Flat, "
           f"nlist = ivf_lists(n) ≈ 4·√n, nprobe {NPROBE}, k-means on {TRAIN_PER_LIST}·nlist "
           "seeded samples")
    report(f"{'pool n':>10} {'graph':>7} {'nlist':>6} {'prepare s':>10} {'recall@50':>10} "
           f"{'exact s':>9} {'ms/step':>8} {'points/step':>12}")
    rows = []
    for n in sizes:
        torch.manual_seed(0)
        r = scale_costs(clustered_unit_vectors(n, dim, seed=0), steps=steps, queries=queries)
        rows.append(r)
        approx = r["approximate"]
        exact = f"~{r['exact_est_s']:.0f}" if approx else "-"
        report(f"{n:>10,} {'approx' if approx else 'exact':>7} "
               f"{ivf_lists(r['n']) if approx else '-':>6} {r['prepare_s']:>10.1f} "
               f"{r['recall'] if approx else 1.0:>10.4f} "
               f"{exact:>9} "
               f"{r['step_ms']:>8.2f} {r['points_per_step']:>12.0f}")
    report("prepare s: the training job's one-off work (pool A's kNN graph, pool B's exact one, "
           "the bandwidths). recall@50: of the exact 50 nearest, the share the graph holds, on "
           f"{queries} seeded query points; exact s: that brute-force search scaled to every point "
           f"(an estimate of the exact graph's build). ms/step: the mean GeRA step from step 10 "
           f"to {steps} (default TrainConfig: {cfg.batch_size} pairs, geo_batch {cfg.geo_batch} × "
           f"(k {cfg.k} + 1) per modality).")
    return rows
