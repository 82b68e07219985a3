"""Training the two aligner heads on an objective (``gera.objectives``), with early stopping.

One loop for every trained method, readable top to bottom: the objective samples each step's
points and computes the loss; the loop owns the heads, the optimiser and validation.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from gera.alignments import Standardizer
from gera.device import cpu_threads, matmul_precision, resolve_device
from gera.errors import GeraError, require_finite
from gera.heads import HeadAlignment, make_head
from gera.losses import MAX_LOGIT_SCALE
from gera.memo import memoize_arrays
from gera.objectives import ContrastiveObjective, Side
from gera.settings import TrainConfig


@dataclass
class TrainResult:
    alignment: HeadAlignment  # the best state by validation (the last one without validation)
    best_step: int
    steps_run: int
    best_val: float
    history: list[dict] = field(default_factory=list)  # {"step", "loss", <terms>, "val", <coverage>}
    wall_s: float = 0.0
    points_per_step: float = 0.0  # head evaluations per step (both modalities), averaged
    diagnostics: dict = field(default_factory=dict)  # the objective's, as of the kept state


def train(pairs_a: np.ndarray, pairs_b: np.ndarray, unpaired_a: np.ndarray,
          unpaired_b: np.ndarray, objective: ContrastiveObjective, config: TrainConfig,
          seed: int = 0, validate: Optional[Callable[[HeadAlignment], float]] = None,
          progress: Optional[Callable[[dict], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, method: str = "") -> TrainResult:
    """Fit two heads on paired embeddings by minimising ``objective``.

    Parameters
    ----------
    pairs_a, pairs_b : (N, d_A), (N, d_B) raw embeddings of the training pairs (row i ↔ row i).
    unpaired_a, unpaired_b : raw embeddings of the items with no partner. Each modality's pool —
        where neighbourhoods live — is its paired ∪ unpaired items.
    objective : what to minimise and on which points (``gera.objectives``).
    validate : alignment → score (higher is better), for early stopping; ``None`` = run all steps.
    progress : called every ``eval_every`` steps with the history row (its ``val`` too where
        there is a validation score).
    should_stop : polled every step; True cancels (the best state so far is returned).
    method : the name the alignment records (checkpoints keep it).
    """
    for name, x in (("paired A", pairs_a), ("paired B", pairs_b), ("unpaired A", unpaired_a),
                    ("unpaired B", unpaired_b)):
        require_finite(x, name)
    if len(pairs_a) < 2:
        raise GeraError("Training needs at least 2 training pairs; raise the paired budget.")
    device = resolve_device(config.device)
    with cpu_threads(config.cpu_threads if device.type == "cpu" else None):
        return _train(pairs_a, pairs_b, unpaired_a, unpaired_b, objective, config, seed, device,
                      validate, progress, should_stop, method)


@memoize_arrays(maxsize=4)
def pool_rows(pairs: np.ndarray, unpaired: np.ndarray, center: bool):
    """The standardised pool of one modality, one row per DISTINCT item, and each pair's row.

    Distinct rows matter: class-level captions repeat across pairs, and copies of a point would
    fill its neighbourhood and drive the heat-kernel bandwidth to zero. Kept: every grid point
    and trained method of a seed trains on the same pools.
    """
    raw = np.concatenate([pairs, unpaired])
    std = Standardizer.fit(raw, center)
    pool, inverse = np.unique(raw, axis=0, return_inverse=True)
    return std, std(pool), inverse.reshape(-1)[:len(pairs)]


class EarlyStopping:
    """Keeps the best state by validation score; says stop after ``patience`` checks without
    improvement. Without a score it keeps nothing and never stops."""

    def __init__(self, validate, patience: int):
        self.validate, self.patience = validate, patience
        self.best, self.best_val, self.best_step, self.since_best = None, -math.inf, 0, 0

    def check(self, row: dict, step: int, snapshot: Callable[[], HeadAlignment]) -> bool:
        if self.validate is None:
            return False
        current = snapshot()
        row["val"] = float(self.validate(current))
        if row["val"] > self.best_val:
            self.best, self.best_val, self.best_step, self.since_best = current, row["val"], step, 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience


def _train(pairs_a, pairs_b, unpaired_a, unpaired_b, objective, cfg: TrainConfig, seed, device,
           validate, progress, should_stop, method):
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    std_a, pool_a, pair_rows_a = pool_rows(pairs_a, unpaired_a, cfg.center)
    std_b, pool_b, pair_rows_b = pool_rows(pairs_b, unpaired_b, cfg.center)
    objective.prepare(pool_a, pool_b, device, seed)
    a = Side(pool_a, make_head(cfg.head, pool_a.shape[1], cfg.dim, cfg.hidden).to(device), device)
    b = Side(pool_b, make_head(cfg.head, pool_b.shape[1], cfg.dim, cfg.hidden).to(device), device)
    pair_rows_a, pair_rows_b = (torch.from_numpy(r).to(device) for r in (pair_rows_a, pair_rows_b))
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature), device=device))
    opt = _optimizer(a.head, b.head, logit_scale, cfg)
    head_config = {"head": cfg.head, "in_a": pool_a.shape[1], "in_b": pool_b.shape[1],
                   "dim": cfg.dim, "hidden": cfg.hidden}

    def snapshot() -> HeadAlignment:
        return HeadAlignment(std_a, std_b, copy.deepcopy(a.head), copy.deepcopy(b.head),
                             logit_scale.item(), head_config, method)

    stopping = EarlyStopping(validate if cfg.early_stopping else None, cfg.patience)
    history, step = [], 0
    for step in range(1, cfg.max_steps + 1):
        with matmul_precision(cfg.matmul_precision):
            batch = objective.sample(pair_rows_a, pair_rows_b)
            loss, terms = objective.loss(batch, a, b, logit_scale)
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
            row = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                   **objective.diagnostics()}
            patience_spent = stopping.check(row, step, snapshot)
            if validate is not None and not cfg.early_stopping:
                row["val"] = float(validate(snapshot()))  # recorded, not acted on
            history.append(row)
            if progress is not None:
                progress(row)
            if patience_spent:
                break
        if should_stop is not None and should_stop():
            break
    best, best_step = stopping.best, stopping.best_step
    if best is None:  # no validation (or cancelled before the first check): the final state
        best, best_step = snapshot(), step
    kept = next((r for r in history if r["step"] == best_step), {})
    diagnostics = {k: v for k, v in {**objective.diagnostics(), **kept}.items()
                   if k in objective.diagnostics()}
    return TrainResult(best, best_step, step, stopping.best_val, history, time.perf_counter() - t0,
                       (a.points_run + b.points_run) / max(step, 1), diagnostics)


def _optimizer(head_a, head_b, logit_scale, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay on the weight matrices only: decaying the temperature or biases would make
    # contrastive-only's weight-decay grid change more than its regularisation.
    params = [p for h in (head_a, head_b) for p in h.parameters()]
    return torch.optim.AdamW([
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2] + [logit_scale], "weight_decay": 0.0}],
        lr=cfg.lr, fused=logit_scale.device.type in ("cpu", "cuda"))  # fused: 4× faster a step
