"""What a trained method minimises, and on which points: one objective object per method.

An objective owns the sampling of each step (which pairs, which neighbourhoods) and the loss on
them; the training loop (``gera.train``) owns the heads, the optimiser and early stopping. So a
new trained method (STRUCTURE, say) is a new objective, not a new loop.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from gera.device import queued_copy
from gera.geometry import heat_bandwidth, knn
from gera.losses import geometric_loss, info_nce, propagation_loss, structure_loss
from gera.memo import memoize_arrays
from gera.settings import TrainConfig


class NeighbourGraph:
    """The kNN graph of one modality's pool (paired ∪ unpaired points), in the original space.

    The original spaces never change during training, so the graph and the heat-kernel bandwidth
    are computed once; each step only samples neighbourhoods from it.

    Parameters
    ----------
    x : (n, d) pool embeddings (any scale; L2-normalised here).
    k : neighbours sampled per anchor per step (default 10).
    k_pool : the candidates they are sampled from: each point's ``k_pool`` nearest (default 50).
    device : where the kNN search runs (faiss on CPU, torch on CUDA).
    """

    def __init__(self, x: np.ndarray, k: int = 10, k_pool: int = 50, device: str = "cpu",
                 eps: float = 0.0):
        n = len(x)
        self.k_pool = max(1, min(k_pool, n - 1))
        self.k = max(1, min(k, self.k_pool))
        self.neighbours, sims = _pool_knn(x, self.k_pool, device)
        self.eps = eps if eps > 0 else heat_bandwidth(sims, self.k)
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
            nbrs = nbrs.gather(1, queued_copy(pick, anchors.device))
        return torch.cat([anchors[:, None], nbrs], dim=1)


@memoize_arrays(maxsize=4)
def _pool_knn(x: np.ndarray, k: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    # Kept: every grid point of a seed (and GeRA's ablations) builds the same pool's graph.
    return knn(x, k, device=device)


class Side:
    """One modality during training: its frozen, standardised pool and its head."""

    def __init__(self, pool: np.ndarray, head: nn.Module, device: torch.device):
        self.original = torch.from_numpy(pool).to(device)
        self.head = head
        self.points_run = 0  # head evaluations so far (for the benchmark's cost per step)

    def embed(self, *groups: torch.Tensor) -> list[torch.Tensor]:
        """The head's output for each group of pool rows (any shape), running the head once per
        DISTINCT row: neighbourhoods overlap and pairs are pool points too. When that is no
        fewer than the whole pool, one pass over the pool is cheaper still (no gather).

        On a GPU every row is run, repeats too: the extra rows cost nothing where a step's time
        is launching kernels, and finding the distinct ones (``torch.unique``) would make the
        step wait for the GPU to say how many there are."""
        flat = torch.cat([g.reshape(-1) for g in groups])
        if self.original.device.type == "cuda":
            z, rows = self.head(self.original[flat]), None
        else:
            uniq, inverse = torch.unique(flat, return_inverse=True)
            if len(uniq) >= len(self.original):
                z, rows = self.head(self.original), flat
            else:
                z, rows = self.head(self.original[uniq]), inverse
        self.points_run += len(z)
        out, start = [], 0
        for g in groups:
            part = slice(start, start + g.numel())
            out.append((z[part] if rows is None else z[rows[part]]).reshape(*g.shape, -1))
            start += g.numel()
        return out


@dataclass
class Batch:
    """One step's points, as pool rows: the pairs, (GeRA) neighbourhoods of each pool, and
    (STRUCTURE) a batch of each pool appended to the pairs."""

    pairs_a: torch.Tensor  # (m,)
    pairs_b: torch.Tensor  # (m,)
    neighbourhoods_a: Optional[torch.Tensor] = None  # (geo_batch, k+1)
    neighbourhoods_b: Optional[torch.Tensor] = None
    pool_a: Optional[torch.Tensor] = None  # (pool_batch,)
    pool_b: Optional[torch.Tensor] = None
    weights: Optional[torch.Tensor] = None  # (m,) each pair's InfoNCE weight; None = all 1
    positives: Optional[torch.Tensor] = None  # (m, m) pairs sharing an item; None = the diagonal
    # (propagation) neighbourhoods of some of the batch's pairs, and which pairs they belong to
    spread_a: Optional[torch.Tensor] = None  # (p, k+1) pool rows, the paired anchor first
    spread_b: Optional[torch.Tensor] = None
    spread_pairs: Optional[torch.Tensor] = None  # (p,) positions in the batch's pairs


class Coverage:
    """How much of each pool a regulariser has drawn so far: what an experiment must report to
    show that the unpaired points reached the model at all."""

    def __init__(self, pool_a: int, pool_b: int):
        self.seen = [np.zeros(pool_a, bool), np.zeros(pool_b, bool)]
        self.drawn = [0, 0]

    def mark(self, side: int, rows: torch.Tensor) -> None:
        rows = rows.reshape(-1).cpu().numpy()
        self.seen[side][rows] = True
        self.drawn[side] += len(rows)

    def report(self) -> dict[str, float]:
        return {f"{key}_{s}": value for i, s in enumerate("ab") for key, value in (
            ("drawn", self.drawn[i]), ("distinct_seen", int(self.seen[i].sum())),
            ("pool", len(self.seen[i])))}


class ContrastiveObjective:
    """CLIP's symmetric InfoNCE on a random batch of the pairs (contrastive-only).

    ``pair_weights`` (one per training pair, in the order ``train`` gets them; None = all 1)
    weights each pair in InfoNCE: how pseudo-pairs are down-weighted beside the real ones.
    ``multi_positive``: every pair of the batch that shares the query's item is a positive
    (``TrainConfig.multi_positive``).
    """

    coverage: Optional[Coverage] = None  # regularisers that draw from the pools set it
    # Attributes that only weigh a loss term (``term_weights``); the rest decide the sampling
    weight_attributes: tuple[str, ...] = ()
    # The loss reads no GPU value back and keeps no state: a step can be captured as a CUDA graph
    capturable = True

    def __init__(self, batch_size: int = 256):
        self.batch_size = batch_size
        self.pair_weights: Optional[np.ndarray] = None
        self.multi_positive = False

    def diagnostics(self) -> dict[str, float]:
        """What the history records besides the loss: pool coverage where there is any."""
        return self.coverage.report() if self.coverage is not None else {}

    def term_weights(self, step: int) -> dict[str, float]:
        """Each loss term's weight at ``step``: the loss is ``Σ weight · term``."""
        return {"con": 1.0}

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss from its terms, weighted as of the step last sampled."""
        weights = self.term_weights(self.steps)
        return functools.reduce(operator.add, (weights[n] * term for n, term in terms.items()))

    def stack_key(self) -> Optional[tuple]:
        """Objectives with equal keys draw the same points at every step from one seed, and
        differ only in their terms' weights (a weight of 0 changes the sampling, so it counts):
        several of them can be trained as one stacked model (``gera.train.train_stacked``).
        None: not stackable."""
        if self.pair_weights is not None:
            return None
        return (type(self),) + tuple(sorted(
            (name, (value != 0) if name in self.weight_attributes else value)
            for name, value in vars(self).items() if name != "pair_weights"))

    def prepare(self, pool_a: np.ndarray, pool_b: np.ndarray, device: torch.device,
                seed: int) -> None:
        """Work on the frozen pools done once before the first step."""
        # Its own stream: the pair batches are then the same for GeRA and contrastive-only at
        # one seed, so their paired difference reflects α, not batch order.
        self.batches = torch.Generator().manual_seed(seed)
        self.steps = 0  # steps sampled so far

    def sample(self, pair_rows_a: torch.Tensor, pair_rows_b: torch.Tensor) -> Batch:
        self.steps += 1
        pick = torch.randperm(len(pair_rows_a), generator=self.batches)[:self.batch_size]
        weights = (None if self.pair_weights is None else
                   torch.as_tensor(self.pair_weights, dtype=torch.float32)[pick])
        pick = queued_copy(pick, pair_rows_a.device)
        rows_a, rows_b = pair_rows_a[pick], pair_rows_b[pick]
        # Rows are distinct items (train.pool_rows), so equal rows are the same clip or text.
        positives = ((rows_a[:, None] == rows_a[None]) | (rows_b[:, None] == rows_b[None])
                     if self.multi_positive else None)
        return Batch(rows_a, rows_b, positives=positives,
                     weights=None if weights is None else queued_copy(weights, pair_rows_a.device))

    def loss(self, batch: Batch, a: Side, b: Side,
             logit_scale: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, its terms by name)`` for the history."""
        (za,), (zb,) = a.embed(batch.pairs_a), b.embed(batch.pairs_b)
        terms = {"con": info_nce(za, zb, logit_scale, batch.weights, batch.positives)}
        return self.total(terms), terms


class GeometricObjective(ContrastiveObjective):
    """GeRA: ``L_con + α (L_geo^A + L_geo^B)``, the geometric term on ``geo_batch``
    neighbourhoods sampled per step from each modality's pool (paired ∪ unpaired)."""

    weight_attributes = ("alpha",)

    def __init__(self, alpha: float = 1.0, k: int = 10, k_pool: int = 50, kernel: str = "heat",
                 divergence: str = "frobenius", geo_batch: int = 16, batch_size: int = 256,
                 eps_a: float = 0.0, eps_b: float = 0.0):
        super().__init__(batch_size)
        self.alpha, self.k, self.k_pool = alpha, k, k_pool
        self.kernel, self.divergence, self.geo_batch = kernel, divergence, geo_batch
        self.fixed_eps = (eps_a, eps_b)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "GeometricObjective":
        return cls(cfg.alpha, cfg.k, cfg.k_pool, cfg.kernel, cfg.divergence, cfg.geo_batch,
                   cfg.batch_size, cfg.eps_a, cfg.eps_b)

    def prepare(self, pool_a, pool_b, device, seed):
        super().prepare(pool_a, pool_b, device, seed)
        self.anchors = torch.Generator().manual_seed(seed + 1)
        self.graphs = [NeighbourGraph(x, self.k, self.k_pool, str(device), eps)
                       for x, eps in zip((pool_a, pool_b), self.fixed_eps)]
        self.pool_sizes = [len(pool_a), len(pool_b)]
        self.coverage = Coverage(len(pool_a), len(pool_b))

    def diagnostics(self):
        return {**super().diagnostics(), "eps_a": self.graphs[0].eps, "eps_b": self.graphs[1].eps}

    def term_weights(self, step):
        return {**super().term_weights(step), "geo": self.alpha}

    def sample(self, pair_rows_a, pair_rows_b):
        batch = super().sample(pair_rows_a, pair_rows_b)
        hoods = []
        for side, (graph, n) in enumerate(zip(self.graphs, self.pool_sizes)):
            anchors = torch.randint(n, (self.geo_batch,), generator=self.anchors)
            self.coverage.mark(side, anchors)
            hoods.append(graph.sample(queued_copy(anchors, pair_rows_a.device), self.anchors))
        batch.neighbourhoods_a, batch.neighbourhoods_b = hoods
        return batch

    def loss(self, batch, a, b, logit_scale):
        za, hood_za = a.embed(batch.pairs_a, batch.neighbourhoods_a)
        zb, hood_zb = b.embed(batch.pairs_b, batch.neighbourhoods_b)
        terms = {"con": info_nce(za, zb, logit_scale, batch.weights, batch.positives),
                 "geo": self.geometric_term(batch, a, b, hood_za, hood_zb)}
        return self.total(terms), terms

    def geometric_term(self, batch, a, b, hood_za, hood_zb) -> torch.Tensor:
        """``L_geo^A + L_geo^B`` on the batch's neighbourhoods, given their head outputs."""
        return sum(geometric_loss(side.original[rows], z, self.kernel, graph.eps, self.divergence)
                   for side, rows, z, graph in ((a, batch.neighbourhoods_a, hood_za, self.graphs[0]),
                                                (b, batch.neighbourhoods_b, hood_zb, self.graphs[1])))


class StructureObjective(ContrastiveObjective):
    """STRUCTURE (NeurIPS 2025): ``L_con + λ_t (R_A + R_B) / 2``, where ``R`` compares the
    multi-scale similarity walks of each modality's batch (the pairs plus ``pool_batch`` points
    drawn from its whole pool) in the frozen and the aligned space (``structure_loss``), and
    ``λ_t = λ · min(1, t / warmup_steps)`` warms up linearly."""

    weight_attributes = ("lam",)

    def __init__(self, lam: float = 10.0, levels: int = 2, tau: float = 0.05,
                 warmup_steps: int = 50, pool_batch: int = 256, batch_size: int = 256):
        super().__init__(batch_size)
        self.lam, self.levels, self.tau = lam, levels, tau
        self.warmup_steps, self.pool_batch = warmup_steps, pool_batch

    def prepare(self, pool_a, pool_b, device, seed):
        super().prepare(pool_a, pool_b, device, seed)
        self.draws = torch.Generator().manual_seed(seed + 2)
        self.pool_sizes = [len(pool_a), len(pool_b)]
        self.coverage = Coverage(len(pool_a), len(pool_b))

    def term_weights(self, step):
        return {**super().term_weights(step),
                "structure": self.lam * min(1.0, step / max(self.warmup_steps, 1))}

    def sample(self, pair_rows_a, pair_rows_b):
        batch = super().sample(pair_rows_a, pair_rows_b)
        if self.pool_batch > 0:
            drawn = [torch.randint(n, (min(self.pool_batch, n),), generator=self.draws)
                     for n in self.pool_sizes]
            for side, rows in enumerate(drawn):  # marked from the CPU draws: nothing waits
                self.coverage.mark(side, rows)
            batch.pool_a, batch.pool_b = (queued_copy(rows, pair_rows_a.device) for rows in drawn)
        return batch

    def loss(self, batch, a, b, logit_scale):
        extra = batch.pool_a is not None
        za, *pool_za = a.embed(batch.pairs_a, *([batch.pool_a] if extra else []))
        zb, *pool_zb = b.embed(batch.pairs_b, *([batch.pool_b] if extra else []))
        con = info_nce(za, zb, logit_scale, batch.weights, batch.positives)
        regulariser = 0.5 * sum(
            structure_loss(side.original[torch.cat([pairs, *pool])],
                           torch.cat([z, *pool_z]), self.levels, self.tau)
            for side, pairs, pool, z, pool_z in (
                (a, batch.pairs_a, [batch.pool_a] if extra else [], za, pool_za),
                (b, batch.pairs_b, [batch.pool_b] if extra else [], zb, pool_zb)))
        terms = {"con": con, "structure": regulariser}
        return self.total(terms), terms


class PropagationObjective(GeometricObjective):
    """Partner propagation: ``L_con + α (L_geo^A + L_geo^B) + β (L_spread^A + L_spread^B)``.

    Each step, ``spread_batch`` of the batch's pairs are anchors; on each side, the anchor's
    neighbourhood in the frozen pool (the same kNN graph and heat-kernel ε as GeRA's term) is
    sampled, and every UNPAIRED neighbour gets the anchor's partner as a soft positive among the
    batch's partners, weighted by the anchor's row of the frozen diffusion operator
    (``propagation_loss``). Paired neighbours keep only their own partner. α = 0 drops GeRA's term
    (no neighbourhoods sampled for it); β = 0 is exactly GeRA (α > 0) or contrastive-only.

    ``seen_a`` / ``seen_b`` count the distinct unpaired pool points that received a partner.
    """

    weight_attributes = ("alpha", "beta")

    def __init__(self, beta: float = 1.0, spread_batch: int = 32, alpha: float = 1.0,
                 k: int = 10, k_pool: int = 50, kernel: str = "heat",
                 divergence: str = "frobenius", geo_batch: int = 16, batch_size: int = 256,
                 eps_a: float = 0.0, eps_b: float = 0.0):
        super().__init__(alpha, k, k_pool, kernel, divergence, geo_batch, batch_size, eps_a, eps_b)
        self.beta, self.spread_batch = beta, spread_batch

    def prepare(self, pool_a, pool_b, device, seed):
        super().prepare(pool_a, pool_b, device, seed)
        self.spreads = torch.Generator().manual_seed(seed + 3)
        self.unpaired = None  # per side: pool rows that are no pair's item (set at the first step)
        # times each pool point received a partner; kept where training runs, so a step never
        # waits to copy it back (read by ``diagnostics`` only)
        self.received = [torch.zeros(n, dtype=torch.int32, device=device) for n in self.pool_sizes]

    def sample(self, pair_rows_a, pair_rows_b):
        batch = (GeometricObjective.sample if self.alpha > 0 else ContrastiveObjective.sample)(
            self, pair_rows_a, pair_rows_b)
        if self.unpaired is None:
            self.unpaired = []
            for rows, n in ((pair_rows_a, self.pool_sizes[0]), (pair_rows_b, self.pool_sizes[1])):
                free = torch.ones(n, dtype=torch.bool, device=rows.device)
                free[rows] = False
                self.unpaired.append(free)
        if self.beta > 0:
            pick = torch.randperm(len(batch.pairs_a), generator=self.spreads)[:self.spread_batch]
            batch.spread_pairs = queued_copy(pick, pair_rows_a.device)
            batch.spread_a, batch.spread_b = (
                graph.sample(rows[batch.spread_pairs], self.spreads)
                for graph, rows in zip(self.graphs, (batch.pairs_a, batch.pairs_b)))
        return batch

    def loss(self, batch, a, b, logit_scale):
        if batch.spread_pairs is None:  # β = 0
            if self.alpha > 0:
                return super().loss(batch, a, b, logit_scale)
            return ContrastiveObjective.loss(self, batch, a, b, logit_scale)
        geo_on = self.alpha > 0
        za, spread_za, *hood_za = a.embed(batch.pairs_a, batch.spread_a,
                                          *([batch.neighbourhoods_a] if geo_on else []))
        zb, spread_zb, *hood_zb = b.embed(batch.pairs_b, batch.spread_b,
                                          *([batch.neighbourhoods_b] if geo_on else []))
        con = info_nce(za, zb, logit_scale, batch.weights, batch.positives)
        terms = {"con": con}
        if geo_on:
            terms["geo"] = self.geometric_term(batch, a, b, hood_za[0], hood_zb[0])
        spread = 0.0
        for side, rows, z, partners, graph, free, received in (
                (a, batch.spread_a, spread_za, zb, self.graphs[0], self.unpaired[0], self.received[0]),
                (b, batch.spread_b, spread_zb, za, self.graphs[1], self.unpaired[1], self.received[1])):
            mask = free[rows[:, 1:]].float()
            received.index_put_((rows[:, 1:].reshape(-1),), mask.reshape(-1).int(), accumulate=True)
            spread = spread + propagation_loss(side.original[rows], z[:, 1:], partners,
                                               batch.spread_pairs, mask, logit_scale,
                                               self.kernel, graph.eps)
        terms["spread"] = spread
        return self.total(terms), terms

    def term_weights(self, step):
        return {**super().term_weights(step), "spread": self.beta}

    def diagnostics(self) -> dict:
        """What the propagation reached: distinct unpaired pool points given a partner, per side."""
        return {**super().diagnostics(),
                "spread_seen_a": int((self.received[0] > 0).sum()),
                "spread_seen_b": int((self.received[1] > 0).sum()),
                "unpaired_pool_a": int(self.unpaired[0].sum()) if self.unpaired else 0,
                "unpaired_pool_b": int(self.unpaired[1].sum()) if self.unpaired else 0}
