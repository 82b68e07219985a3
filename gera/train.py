"""Training the two aligner heads with ``L = L_con + α (L_geo^A + L_geo^B)``.

One config, one loop you can read top to bottom. α = 0 is the contrastive-only baseline: same
heads, optimiser, schedule and early stopping, nothing else differs.
"""
from __future__ import annotations

import copy
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from gera.aligners import HeadAlignment, Standardizer, make_head
from gera.errors import GeraError, require_finite
from gera.geometry import NeighbourGraph
from gera.losses import MAX_LOGIT_SCALE, geometric_loss, info_nce


@dataclass
class TrainConfig:
    """Everything that defines a training job (defaults are the documented choices)."""

    alpha: float = 1.0  # weight of the geometric term; 0 = contrastive only
    k: int = 10  # neighbours per anchor per step
    k_pool: int = 50  # ...sampled from each point's k_pool nearest in the original space
    kernel: str = "heat"  # heat | inverse | linear | squared
    divergence: str = "frobenius"  # frobenius | kl
    head: str = "mlp"  # mlp | linear
    dim: int = 256  # shared space dimension
    hidden: int = 512  # MLP hidden width
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 0.07  # initial InfoNCE temperature (learned)
    batch_size: int = 256  # pairs per step (all of them when there are fewer)
    geo_batch: int = 16  # anchors per modality per step for the geometric term
    max_steps: int = 1000
    eval_every: int = 10  # steps between validation checks
    patience: int = 10  # validation checks without improvement before stopping
    center: bool = True  # centre each modality by its pool mean before normalising
    seed: int = 0
    device: str = "auto"  # auto = cuda > mps > cpu
    # CPU threads for the heads. They are small, and two processes sharing the cores with
    # multi-threaded OpenMP stalled each other ~30x here (a second user, a test run); one thread
    # costs little when alone.
    cpu_threads: int = 1


@dataclass
class TrainResult:
    alignment: HeadAlignment
    best_step: int
    steps_run: int
    best_val: float
    history: list[dict] = field(default_factory=list)  # {"step", "loss", "con", "geo", "val"}
    wall_s: float = 0.0
    points_per_step: float = 0.0  # head evaluations per step (both modalities), averaged


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _run_head_on(head, pool: torch.Tensor,
                 index_groups: list[torch.Tensor]) -> tuple[list[torch.Tensor], int]:
    """Evaluate ``head`` once per UNIQUE pool point the groups mention; return each group's rows
    and how many points the head ran on.

    Neighbourhoods overlap and pairs are pool points too, so this runs the head on far fewer
    points than the groups' total. When that is no fewer than the whole pool, one pass over the
    pool is cheaper still (no gather of inputs).
    """
    flat = torch.cat([g.reshape(-1) for g in index_groups])
    uniq, inverse = torch.unique(flat, return_inverse=True)
    if len(uniq) >= len(pool):
        z, rows = head(pool), flat
    else:
        z, rows = head(pool[uniq]), inverse
    out, start = [], 0
    for g in index_groups:
        out.append(z[rows[start:start + g.numel()]].reshape(*g.shape, -1))
        start += g.numel()
    return out, len(z)


def train(pairs_a: np.ndarray, pairs_b: np.ndarray, unpaired_a: np.ndarray,
          unpaired_b: np.ndarray, config: TrainConfig,
          validate: Optional[Callable[[HeadAlignment], float]] = None,
          progress: Optional[Callable[[dict], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, method: str = "gera") -> TrainResult:
    """Fit two heads on paired embeddings, regularised by the geometry of each modality's pool.

    Parameters
    ----------
    pairs_a, pairs_b : (N, d_A), (N, d_B) raw embeddings of the training pairs (row i ↔ row i).
    unpaired_a, unpaired_b : raw embeddings of the items with no partner. Each modality's pool —
        where neighbourhoods live — is its paired ∪ unpaired items.
    validate : alignment → score (higher is better), for early stopping; ``None`` = run all steps.
    progress : called after every validation check with the last history row.
    should_stop : polled every step; True cancels (the best state so far is returned).
    """
    for name, x in (("paired A", pairs_a), ("paired B", pairs_b), ("unpaired A", unpaired_a),
                    ("unpaired B", unpaired_b)):
        require_finite(x, name)
    if len(pairs_a) < 2:
        raise GeraError("Training needs at least 2 training pairs; raise the paired budget.")
    with _cpu_threads(config.cpu_threads if resolve_device(config.device) == "cpu" else None):
        return _train(pairs_a, pairs_b, unpaired_a, unpaired_b, config, validate, progress,
                      should_stop, method)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0


@contextmanager
def _cpu_threads(n: Optional[int]):
    """torch's thread count is process-wide: the first concurrent job sets it, the last one
    out restores it, so two trainings in one process (two app users) cannot strand it at 1."""
    global _threads_users, _threads_before
    if n is None:
        yield
        return
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(max(1, n))
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


def _pool(pairs: np.ndarray, unpaired: np.ndarray, center: bool):
    """The standardised pool of one modality, one row per DISTINCT item, and each pair's row.

    Distinct rows matter: class-level captions repeat across pairs, and copies of a point would
    fill its neighbourhood and drive the heat-kernel bandwidth to zero.
    """
    raw = np.concatenate([pairs, unpaired])
    std = Standardizer.fit(raw, center)
    pool, inverse = np.unique(raw, axis=0, return_inverse=True)
    return std, std(pool), inverse.reshape(-1)[:len(pairs)]


def _train(pairs_a, pairs_b, unpaired_a, unpaired_b, cfg: TrainConfig, validate, progress,
           should_stop, method):
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    # Separate streams: the pair batches are then the same for GeRA and contrastive-only at one
    # seed, so their paired difference reflects α, not batch order.
    gen_batches = torch.Generator().manual_seed(cfg.seed)
    gen_geometry = torch.Generator().manual_seed(cfg.seed + 1)

    std_a, pool_a, pair_rows_a = _pool(pairs_a, unpaired_a, cfg.center)
    std_b, pool_b, pair_rows_b = _pool(pairs_b, unpaired_b, cfg.center)
    use_geo = cfg.alpha > 0
    if use_geo:
        graphs = [NeighbourGraph(x, cfg.k, cfg.k_pool, device) for x in (pool_a, pool_b)]
    xa, xb = torch.from_numpy(pool_a).to(device), torch.from_numpy(pool_b).to(device)
    pair_rows_a = torch.from_numpy(pair_rows_a).to(device)
    pair_rows_b = torch.from_numpy(pair_rows_b).to(device)

    head_a = make_head(cfg.head, xa.shape[1], cfg.dim, cfg.hidden).to(device)
    head_b = make_head(cfg.head, xb.shape[1], cfg.dim, cfg.hidden).to(device)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature), device=device))
    weights = [p for h in (head_a, head_b) for p in h.parameters() if p.ndim >= 2]
    others = [p for h in (head_a, head_b) for p in h.parameters() if p.ndim < 2]
    # Weight decay on the weight matrices only: decaying the temperature or biases would make
    # contrastive-only's weight-decay grid change more than its regularisation.
    opt = torch.optim.AdamW([{"params": weights, "weight_decay": cfg.weight_decay},
                             {"params": others + [logit_scale], "weight_decay": 0.0}], lr=cfg.lr)
    head_config = {"head": cfg.head, "in_a": xa.shape[1], "in_b": xb.shape[1], "dim": cfg.dim,
                   "hidden": cfg.hidden}

    def snapshot() -> HeadAlignment:
        return HeadAlignment(std_a, std_b, copy.deepcopy(head_a), copy.deepcopy(head_b),
                             logit_scale.item(), head_config, method)

    best, best_val, best_step, checks_since_best = None, -math.inf, 0, 0
    history, points, step = [], 0, 0
    for step in range(1, cfg.max_steps + 1):
        batch = torch.randperm(len(pair_rows_a), generator=gen_batches)[:cfg.batch_size].to(device)
        rows_a, rows_b = pair_rows_a[batch], pair_rows_b[batch]
        groups_a, groups_b = [rows_a], [rows_b]
        if use_geo:
            for graph, groups, x in ((graphs[0], groups_a, xa), (graphs[1], groups_b, xb)):
                anchors = torch.randint(len(x), (cfg.geo_batch,), generator=gen_geometry).to(device)
                groups.append(graph.sample(anchors, gen_geometry))
        za, n_a = _run_head_on(head_a, xa, groups_a)
        zb, n_b = _run_head_on(head_b, xb, groups_b)
        points += n_a + n_b

        loss_con = info_nce(za[0], zb[0], logit_scale)
        loss_geo = torch.zeros((), device=device)
        if use_geo:
            for graph, x, groups, z in ((graphs[0], xa, groups_a, za), (graphs[1], xb, groups_b, zb)):
                loss_geo = loss_geo + geometric_loss(x[groups[1]], z[1], cfg.kernel, graph.eps,
                                                     cfg.divergence)
        loss = loss_con + cfg.alpha * loss_geo
        if not torch.isfinite(loss):
            raise GeraError(f"The training loss became {loss.item()} at step {step} "
                            f"(lr={cfg.lr}, alpha={cfg.alpha}). Lower the learning rate or α, "
                            "and check the embeddings for NaN/inf values.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP clamps the parameter itself, so its gradient never dies
            logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))

        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            row = {"step": step, "loss": loss.item(), "con": loss_con.item(), "geo": loss_geo.item()}
            if validate is not None:
                current = snapshot()
                row["val"] = float(validate(current))
                if row["val"] > best_val:
                    best, best_val, best_step, checks_since_best = current, row["val"], step, 0
                else:
                    checks_since_best += 1
            history.append(row)
            if progress is not None:
                progress(row)
            if validate is not None and checks_since_best >= cfg.patience:
                break
        if should_stop is not None and should_stop():
            break

    if best is None:  # no validation (or cancelled before the first check): the final state
        best, best_step = snapshot(), step
    return TrainResult(best, best_step, step, best_val, history, time.perf_counter() - t0,
                       points / max(step, 1))
