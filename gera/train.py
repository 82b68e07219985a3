"""Training the two aligner heads with ``L = L_con + α (L_geo^A + L_geo^B)``.

One config, one loop you can read top to bottom. α = 0 is the contrastive-only baseline: same
heads, optimiser, schedule and early stopping, nothing else differs.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from gera.aligners import HeadAlignment, Standardizer, make_head
from gera.errors import GeraError
from gera.geometry import NeighbourGraph
from gera.losses import geometric_loss, info_nce


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


def train(pairs_a: np.ndarray, pairs_b: np.ndarray, pool_a: np.ndarray, pool_b: np.ndarray,
          config: TrainConfig, validate: Optional[Callable[[HeadAlignment], float]] = None,
          progress: Optional[Callable[[dict], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, method: str = "gera") -> TrainResult:
    """Fit two heads on paired embeddings, regularised by the geometry of each modality's pool.

    Parameters
    ----------
    pairs_a, pairs_b : (N, d_A), (N, d_B) raw embeddings of the training pairs (row i ↔ row i).
    pool_a, pool_b : raw embeddings of the UNPAIRED items of each modality; the geometric term's
        pool is pairs ∪ unpaired.
    validate : alignment → score (higher is better), for early stopping; ``None`` = run all steps.
    progress : called after every validation check with the last history row.
    should_stop : polled every step; True cancels (the best state so far is returned).
    """
    for name, x in (("paired A", pairs_a), ("paired B", pairs_b), ("unpaired A", pool_a),
                    ("unpaired B", pool_b)):
        bad = int((~np.isfinite(x)).any(axis=1).sum()) if len(x) else 0
        if bad:
            raise GeraError(f"{bad} {name} embedding(s) contain NaN or inf, so training cannot "
                            "start. Re-embed those items (delete their cache folder) or drop them.")
    if len(pairs_a) < 2:
        raise GeraError("Training needs at least 2 training pairs; raise the paired budget.")
    threads_before = torch.get_num_threads()
    if resolve_device(config.device) == "cpu":
        torch.set_num_threads(max(1, config.cpu_threads))
    try:
        return _train(pairs_a, pairs_b, pool_a, pool_b, config, validate, progress, should_stop, method)
    finally:
        torch.set_num_threads(threads_before)


def _train(pairs_a, pairs_b, pool_a, pool_b, config, validate, progress, should_stop, method):
    cfg = config
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    # The original spaces: standardised pools (pairs first, so pair i is pool row i).
    std_a = Standardizer.fit(np.concatenate([pairs_a, pool_a]), cfg.center)
    std_b = Standardizer.fit(np.concatenate([pairs_b, pool_b]), cfg.center)
    xa = torch.from_numpy(std_a(np.concatenate([pairs_a, pool_a]))).to(device)
    xb = torch.from_numpy(std_b(np.concatenate([pairs_b, pool_b]))).to(device)
    n_pairs = len(pairs_a)
    use_geo = cfg.alpha > 0
    if use_geo:
        graphs = [NeighbourGraph(x.cpu().numpy(), cfg.k, cfg.k_pool, device) for x in (xa, xb)]

    head_a = make_head(cfg.head, xa.shape[1], cfg.dim, cfg.hidden).to(device)
    head_b = make_head(cfg.head, xb.shape[1], cfg.dim, cfg.hidden).to(device)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature), device=device))
    params = [*head_a.parameters(), *head_b.parameters(), logit_scale]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    head_config = {"head": cfg.head, "in_a": xa.shape[1], "in_b": xb.shape[1], "dim": cfg.dim,
                   "hidden": cfg.hidden}

    def snapshot() -> HeadAlignment:
        return HeadAlignment(std_a, std_b, copy.deepcopy(head_a), copy.deepcopy(head_b),
                             logit_scale.item(), head_config, method)

    best, best_val, best_step, checks_since_best = None, -math.inf, 0, 0
    history, points, step = [], 0, 0
    for step in range(1, cfg.max_steps + 1):
        batch = torch.randperm(n_pairs, generator=gen)[:cfg.batch_size].to(device)
        groups_a, groups_b = [batch], [batch]
        if use_geo:
            for graph, groups, x in ((graphs[0], groups_a, xa), (graphs[1], groups_b, xb)):
                anchors = torch.randint(len(x), (cfg.geo_batch,), generator=gen).to(device)
                groups.append(graph.sample(anchors, gen))
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

    if best is None:  # no validation: the final state is the result
        best, best_step = snapshot(), step
    return TrainResult(best, best_step, step, best_val, history, time.perf_counter() - t0,
                       points / max(step, 1))

