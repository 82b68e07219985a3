"""Training the two aligner heads on an objective (``gera.objectives``), with early stopping.

One loop for every trained method, readable top to bottom (``_train``): the objective samples
each step's points and computes the loss; the loop owns the heads, the optimiser and validation.
``train_stacked`` runs several such trainings of one seed as one stacked model (tuning's first
settings), and on CUDA every training goes through it, a single one as a stack of one, because
there its step is captured once as a CUDA graph and replayed (``CapturedStep``).
"""
from __future__ import annotations

import copy
import functools
import math
import operator
import time
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Optional

import numpy as np
import torch

from gera.alignments import Standardizer
from gera.device import cpu_threads, matmul_precision, queued_copy, resolve_device
from gera.errors import GeraError, require_finite
from gera.heads import HeadAlignment, make_head
from gera.losses import MAX_LOGIT_SCALE
from gera.memo import memoize_arrays
from gera.objectives import Batch, ContrastiveObjective, Side
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
    _check_inputs(pairs_a, pairs_b, unpaired_a, unpaired_b)
    device = resolve_device(config.device)
    if (device.type == "cuda" and stacking_wanted(config) and objective.capturable
            and objective.stack_key() is not None):
        # A stack of one: its step is captured as a CUDA graph and replayed (train_stacked)
        return _train_stacked(pairs_a, pairs_b, unpaired_a, unpaired_b, [objective], [config],
                              seed, device, validate,
                              None if progress is None else lambda _, row: progress(row),
                              should_stop, method)[0]
    with cpu_threads(config.cpu_threads if device.type == "cpu" else None):
        return _train(pairs_a, pairs_b, unpaired_a, unpaired_b, objective, config, seed, device,
                      validate, progress, should_stop, method)


def _check_inputs(pairs_a, pairs_b, unpaired_a, unpaired_b) -> None:
    for name, x in (("paired A", pairs_a), ("paired B", pairs_b), ("unpaired A", unpaired_a),
                    ("unpaired B", unpaired_b)):
        require_finite(x, name)
    if len(pairs_a) < 2:
        raise GeraError("Training needs at least 2 training pairs; raise the paired budget.")


def stacking_wanted(config: TrainConfig) -> bool:
    """What ``TrainConfig.stack_fits`` asks for where ``config`` trains: auto = on CUDA."""
    if config.stack_fits == "auto":
        return resolve_device(config.device).type == "cuda"
    return config.stack_fits == "always"


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


@dataclass
class Setup:
    """What every training run of one seed builds before its first step: the standardised pools,
    the pairs as pool rows, the objective prepared on the pools, and the heads' shape."""

    std_a: Standardizer
    std_b: Standardizer
    pool_a: np.ndarray
    pool_b: np.ndarray
    pair_rows_a: torch.Tensor
    pair_rows_b: torch.Tensor
    head_config: dict

    @classmethod
    def build(cls, pairs_a, pairs_b, unpaired_a, unpaired_b, objective, cfg: TrainConfig, seed,
              device) -> "Setup":
        torch.manual_seed(seed)
        std_a, pool_a, rows_a = pool_rows(pairs_a, unpaired_a, cfg.center)
        std_b, pool_b, rows_b = pool_rows(pairs_b, unpaired_b, cfg.center)
        objective.prepare(pool_a, pool_b, device, seed)
        head_config = {"head": cfg.head, "in_a": pool_a.shape[1], "in_b": pool_b.shape[1],
                       "dim": cfg.dim, "hidden": cfg.hidden}
        return cls(std_a, std_b, pool_a, pool_b, torch.from_numpy(rows_a).to(device),
                   torch.from_numpy(rows_b).to(device), head_config)

    def heads(self, device) -> tuple[torch.nn.Module, torch.nn.Module]:
        """Freshly initialised heads (from the seed ``build`` set: every run of a seed starts
        from the same heads)."""
        c = self.head_config
        return (make_head(c["head"], c["in_a"], c["dim"], c["hidden"]).to(device),
                make_head(c["head"], c["in_b"], c["dim"], c["hidden"]).to(device))

    def alignment(self, head_a, head_b, logit_scale: float, method: str) -> HeadAlignment:
        return HeadAlignment(self.std_a, self.std_b, head_a, head_b, logit_scale,
                             self.head_config, method)


class RunLog:
    """One training run's record: the row of each check (loss, terms, diagnostics, validation),
    early stopping, and the state it keeps. Both loops keep one per run."""

    def __init__(self, validate, cfg: TrainConfig, progress: Optional[Callable[[dict], None]]):
        self.stopping = EarlyStopping(validate if cfg.early_stopping else None, cfg.patience)
        self.recorded = None if cfg.early_stopping else validate  # scored, not acted on
        self.progress, self.history = progress, []
        self.stopped_at, self.final = None, None

    def check(self, step: int, loss: float, terms: dict, diagnostics: dict,
              snapshot: Callable[[], HeadAlignment]) -> bool:
        """Record a check; True when patience is spent (the run stops here)."""
        row = {"step": step, "loss": loss, **terms, **diagnostics}
        spent = self.stopping.check(row, step, snapshot)
        if self.recorded is not None:
            row["val"] = float(self.recorded(snapshot()))
        self.history.append(row)
        if self.progress is not None:
            self.progress(row)
        if spent:
            self.stopped_at = step
            if self.stopping.best is None:  # no score ever counted (NaN): its state as it stops
                self.final = snapshot()
        return spent

    def result(self, objective, last_step: int, snapshot: Callable[[], HeadAlignment],
               wall_s: float, points_per_step: float) -> TrainResult:
        """The kept state (the best by validation, else the state at the run's end)."""
        steps = self.stopped_at or last_step
        best, best_step = self.stopping.best, self.stopping.best_step
        if best is None:
            best, best_step = self.final or snapshot(), steps
        return TrainResult(best, best_step, steps, self.stopping.best_val, self.history, wall_s,
                           points_per_step, _kept_diagnostics(objective, self.history, best_step))


class DivergenceWatch:
    """Watches each run's loss for inf/NaN. On a CPU every step is read at once. On a GPU,
    reading a value waits for the GPU to finish the step, so the check is kept there as a flag
    and read every ``every`` steps (and at the last): the step then still queues up while the GPU
    works on the one before."""

    def __init__(self, device: torch.device, every: int, runs: int = 1):
        self.every = 1 if device.type == "cpu" else every
        self.flags = torch.zeros(runs, dtype=torch.bool, device=device)

    def see(self, losses: torch.Tensor) -> None:
        """Note this step's losses (on their device: nothing waits)."""
        self.flags |= ~torch.isfinite(losses.detach().reshape(-1))

    def diverged(self, step: int, last: bool) -> list[int]:
        """The runs whose loss has not been finite at some step so far ([] between reads)."""
        if step % self.every and not last:
            return []
        return [i for i, bad in enumerate(self.flags.tolist()) if bad]

    def check(self, step: int, last: bool, losses: torch.Tensor, configs: list[TrainConfig],
              active: Optional[list[int]] = None) -> None:
        """At a read: raise for the first run (of ``active``: a stopped run is past caring)
        whose loss has not been finite."""
        bad = [i for i in self.diverged(step, last) if active is None or i in active]
        if bad:
            raise self.error(losses.reshape(-1)[bad[0]], step, configs[bad[0]])

    def error(self, loss: torch.Tensor, step: int, cfg: TrainConfig) -> GeraError:
        when = f"at step {step}" if self.every == 1 else f"by step {step}"
        return GeraError(f"The training loss became {loss.item()} {when} "
                         f"(lr={cfg.lr}, alpha={cfg.alpha}, weight_decay={cfg.weight_decay}). "
                         "Lower the learning rate or α, and check the embeddings for NaN/inf "
                         "values.")


def _kept_diagnostics(objective, history: list[dict], best_step: int) -> dict:
    """The objective's diagnostics as of the kept state."""
    kept = next((r for r in history if r["step"] == best_step), {})
    return {k: v for k, v in {**objective.diagnostics(), **kept}.items()
            if k in objective.diagnostics()}


def _train(pairs_a, pairs_b, unpaired_a, unpaired_b, objective, cfg: TrainConfig, seed, device,
           validate, progress, should_stop, method):
    t0 = time.perf_counter()
    setup = Setup.build(pairs_a, pairs_b, unpaired_a, unpaired_b, objective, cfg, seed, device)
    head_a, head_b = setup.heads(device)
    a, b = Side(setup.pool_a, head_a, device), Side(setup.pool_b, head_b, device)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature), device=device))
    opt = _optimizer(a.head, b.head, logit_scale, cfg)

    def snapshot() -> HeadAlignment:
        return setup.alignment(copy.deepcopy(a.head), copy.deepcopy(b.head), logit_scale.item(),
                               method)

    log = RunLog(validate, cfg, progress)
    watch = DivergenceWatch(device, cfg.eval_every)
    step = 0
    for step in range(1, cfg.max_steps + 1):
        with matmul_precision(cfg.matmul_precision):
            batch = objective.sample(setup.pair_rows_a, setup.pair_rows_b)
            loss, terms = objective.loss(batch, a, b, logit_scale)
            watch.see(loss)
            watch.check(step, step == cfg.max_steps, loss, [cfg])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():  # CLIP clamps the parameter itself, so its gradient never dies
            logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            if log.check(step, loss.item(), {k: v.item() for k, v in terms.items()},
                         objective.diagnostics(), snapshot):
                break
        if should_stop is not None and should_stop():
            break
    watch.check(step, True, loss, [cfg])  # cancelled between two reads (on a GPU)
    return log.result(objective, step, snapshot, time.perf_counter() - t0,
                      (a.points_run + b.points_run) / max(step, 1))


def can_stack(objectives: list, configs: list[TrainConfig]) -> bool:
    """Whether these runs (one objective and config each) can train as one stacked model: their
    objectives draw the same points (``stack_key``) and their configs differ at most in α (an
    objective's weight) and weight decay."""
    keys = {o.stack_key() for o in objectives}
    shared = [replace(c, alpha=0.0, weight_decay=0.0) for c in configs]
    return (len(objectives) == len(configs) and None not in keys and len(keys) == 1
            and all(c == shared[0] for c in shared))


def train_stacked(pairs_a: np.ndarray, pairs_b: np.ndarray, unpaired_a: np.ndarray,
                  unpaired_b: np.ndarray, objectives: list, configs: list[TrainConfig],
                  seed: int = 0, validate: Optional[Callable[[HeadAlignment], float]] = None,
                  progress: Optional[Callable[[int, dict], None]] = None,
                  should_stop: Optional[Callable[[], bool]] = None,
                  method: str = "") -> list[TrainResult]:
    """``train`` for several runs of one seed at once, as one stacked model: run i is
    ``train(…, objectives[i], configs[i], seed, …)``. The runs must ``can_stack``.

    Every run draws the same points each step (the first objective samples for all), and its
    heads are run with ``torch.func.vmap`` over stacked parameters, so a step launches the kernels
    of one run for all of them. Each run keeps its own early stopping, history and best state;
    the step loop goes on until the last has stopped (a stopped run's later steps are not
    recorded: its result is as if it had stopped). The results equal the single runs' up to
    float rounding (tested). ``progress(i, row)``; each result's ``wall_s`` is the stack's.
    ``should_stop`` (a cancel, a job's time limit) stops every run at the same step, where one by
    one the first runs would have finished.
    """
    if not can_stack(objectives, configs):
        raise GeraError("These training runs cannot be stacked: they must sample alike and "
                        "differ only in loss weights and weight decay.")
    _check_inputs(pairs_a, pairs_b, unpaired_a, unpaired_b)
    cfg = configs[0]
    device = resolve_device(cfg.device)
    with cpu_threads(cfg.cpu_threads if device.type == "cpu" else None):
        return _train_stacked(pairs_a, pairs_b, unpaired_a, unpaired_b, objectives, configs,
                              seed, device, validate, progress, should_stop, method)


WARMUP_STEPS = 3  # eager steps before a step is captured as a CUDA graph (CapturedStep)


def _train_stacked(pairs_a, pairs_b, unpaired_a, unpaired_b, objectives, configs, seed, device,
                   validate, progress, should_stop, method):
    t0 = time.perf_counter()
    cfg, sampler, runs = configs[0], objectives[0], len(objectives)
    setup = Setup.build(pairs_a, pairs_b, unpaired_a, unpaired_b, sampler, cfg, seed, device)
    heads = setup.heads(device)  # the modules the stacked parameters run through
    stacked = [{name: p.detach().expand(runs, *p.shape).clone().requires_grad_()
                for name, p in head.named_parameters()} for head in heads]
    logit_scale = torch.full((runs,), math.log(1.0 / cfg.temperature), device=device,
                             requires_grad=True)
    matrices = [p for params in stacked for p in params.values() if p.ndim >= 3]
    others = [p for params in stacked for p in params.values() if p.ndim < 3] + [logit_scale]
    graphed = device.type == "cuda" and sampler.capturable
    opt = torch.optim.AdamW([{"params": matrices}, {"params": others}], lr=cfg.lr,
                            weight_decay=0.0, fused=device.type in ("cpu", "cuda"),
                            capturable=graphed)
    # AdamW's decoupled decay, per run: the weights shrink by (1 − lr·wd) before each update
    decay = torch.tensor([1.0 - cfg.lr * c.weight_decay for c in configs], device=device)
    decays = any(c.weight_decay > 0 for c in configs)
    names = list(sampler.term_weights(0))
    weights = torch.zeros(len(names), runs, device=device)  # [term, run], updated in place
    a, b = Side(setup.pool_a, None, device), Side(setup.pool_b, None, device)
    watch = DivergenceWatch(device, cfg.eval_every, runs)
    traced = 0  # steps whose Python ran (the rest are replays of a captured one)

    def run_terms(params_a, params_b, scale, batch):
        """One run's loss terms; vmapped over the stacked parameters."""
        a.head = functools.partial(torch.func.functional_call, heads[0], params_a)
        b.head = functools.partial(torch.func.functional_call, heads[1], params_b)
        return sampler.loss(batch, a, b, scale)[1]

    stacked_terms = torch.func.vmap(run_terms, in_dims=(0, 0, 0, None))

    def train_step(batch: Batch):
        """Loss, backward and update for every run: no reads of GPU values, so it can be
        captured once and replayed."""
        nonlocal traced
        traced += 1
        opt.zero_grad(set_to_none=True)  # in a capture: the graph's backward makes the gradients
        terms = stacked_terms(stacked[0], stacked[1], logit_scale, batch)
        losses = functools.reduce(operator.add, (weights[names.index(n)] * t
                                                 for n, t in terms.items()))
        watch.see(losses)
        losses.sum().backward()
        if decays:
            with torch.no_grad():
                for p in matrices:
                    p.mul_(decay.view(-1, *[1] * (p.ndim - 1)))
        opt.step()
        with torch.no_grad():  # CLIP clamps the parameter itself, so its gradient never dies
            logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
        # detached: holding the step's autograd graph into the next step would tie its
        # gradient accumulation to this step's stream
        return losses.detach(), {n: t.detach() for n, t in terms.items()}

    def snapshot(i: int) -> HeadAlignment:
        out = []
        for head, params in zip(heads, stacked):
            one = copy.deepcopy(head)
            one.load_state_dict({name: p[i].detach() for name, p in params.items()})
            out.append(one)
        return setup.alignment(*out, logit_scale[i].item(), method)

    logs = [RunLog(validate, c, None if progress is None else functools.partial(progress, i))
            for i, c in enumerate(configs)]
    active = list(range(runs))
    run_step = CapturedStep(train_step) if graphed else train_step
    weight_rows, step = None, 0
    for step in range(1, cfg.max_steps + 1):
        with matmul_precision(cfg.matmul_precision):
            batch = sampler.sample(setup.pair_rows_a, setup.pair_rows_b)
            rows = [[o.term_weights(sampler.steps)[n] for o in objectives] for n in names]
            if rows != weight_rows:  # a copy only when a weight changes (STRUCTURE's warm-up)
                weights.copy_(queued_copy(torch.tensor(rows), device))
                weight_rows = rows
            losses, terms = run_step(batch)
            watch.check(step, step == cfg.max_steps, losses, configs, active)
        for i in list(active) if step % cfg.eval_every == 0 or step == cfg.max_steps else ():
            if logs[i].check(step, losses[i].item(), {k: v[i].item() for k, v in terms.items()},
                             sampler.diagnostics(), functools.partial(snapshot, i)):
                active.remove(i)
        if not active or (should_stop is not None and should_stop()):
            break
    watch.check(step, True, losses, configs, active)  # cancelled between two reads (on a GPU)
    wall, points = time.perf_counter() - t0, (a.points_run + b.points_run) / max(traced, 1)
    return [log.result(sampler, step, functools.partial(snapshot, i), wall, points)
            for i, log in enumerate(logs)]


class CapturedStep:
    """``step(batch)`` on CUDA, captured once as a CUDA graph and replayed: eager for the first
    ``warmup`` calls (on a side stream, as torch asks before a capture: the optimiser's state,
    cuBLAS' workspaces), then captured, and from then on each call's batch is copied into the
    tensors the graph reads and the graph replayed — one launch for the step's ~300 kernels. The
    step must read no GPU value back; its outputs are the same tensors, rewritten, every replay."""

    def __init__(self, step: Callable[[Batch], tuple], warmup: int = WARMUP_STEPS):
        self.step, self.warmup = step, warmup
        self.side = torch.cuda.Stream()
        self.graph, self.static, self.outputs = None, None, None
        self.eager = False  # the capture failed: every step runs as it is

    def __call__(self, batch: Batch) -> tuple:
        if self.eager or (self.graph is None and self.warmup > 0):
            self.warmup -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                out = self.step(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return out
        if self.graph is None:
            self.static = StaticBatch(batch)
            self.graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                    self.outputs = self.step(self.static.batch)
            except RuntimeError as error:  # capturing runs nothing: the step is still to do
                warnings.warn(f"This training's step could not be captured as a CUDA graph "
                              f"({error}); it runs eagerly (slower, the same numbers).")
                self.eager, self.graph = True, None
                return self(batch)
        else:
            self.static.fill(batch)
        self.graph.replay()  # capturing ran nothing: the capturing call's step is a replay too
        return self.outputs


class StaticBatch:
    """A step's points in tensors that stay put, for a captured CUDA graph: each step's batch is
    copied into them (device to device, queued) before the graph is replayed."""

    def __init__(self, batch: Batch):
        self.batch = Batch(**{f.name: None if getattr(batch, f.name) is None
                              else getattr(batch, f.name).clone() for f in fields(Batch)})

    def fill(self, batch: Batch) -> None:
        for f in fields(Batch):
            value, static = getattr(batch, f.name), getattr(self.batch, f.name)
            if (value is None) != (static is None) or (value is not None
                                                       and value.shape != static.shape):
                # copy_ would broadcast a smaller batch silently
                raise GeraError(f"A captured training step got a batch of another shape "
                                f"({f.name}); the objective must draw the same shapes every step.")
            if value is not None:
                static.copy_(value)


def _optimizer(head_a, head_b, logit_scale, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay on the weight matrices only: decaying the temperature or biases would make
    # contrastive-only's weight-decay grid change more than its regularisation.
    params = [p for h in (head_a, head_b) for p in h.parameters()]
    return torch.optim.AdamW([
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2] + [logit_scale], "weight_decay": 0.0}],
        lr=cfg.lr, fused=logit_scale.device.type in ("cpu", "cuda"))  # fused: 4× faster a step
