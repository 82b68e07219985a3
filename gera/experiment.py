"""Fair comparisons: every method, the same seeds, the same pairs, the same tuning budget.

``compare`` runs, for each seed, one split of the task (validation carved out of the paired
budget), tunes every method on its grid of the same size with the same validation score, keeps
the best setting by validation only, then evaluates it once on the test data. It reports
mean ± std over seeds and the paired difference GeRA − each baseline over the same seeds.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np

from gera.aligners import Alignment
from gera.cache import EmbeddingCache
from gera.data import get_task
from gera.data.base import Split, Task, ZeroShot
from gera.data.text import text_items
from gera.encoders import DEFAULT_ENCODERS, get_encoder
from gera.errors import GeraError
from gera.evaluate import (linear_probe, mean_reciprocal_rank, neighbourhood_metrics, pair_matches,
                           retrieval, zero_shot, zero_shot_scores)
from gera.methods import METHODS, Pairs, Unpaired, get_method, method_class
from gera.train import TrainConfig

Progress = Optional[Callable[[dict], None]]


@dataclass
class CompareSettings:
    """What ``compare`` runs.

    ``grid_size``: settings tried per method, the same number for every method (1 = each
    method's first grid point; 0 = no grid at all: the trained methods use ``train`` exactly as
    given and the training-free ones their defaults — for ablations).
    """

    task: str = "fashion-mnist"
    task_options: dict = field(default_factory=dict)  # passed to get_task (e.g. n_test)
    budget: int = 100
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    methods: Sequence[str] = METHODS
    encoder_a: Optional[str] = None  # None = the task's modality default
    encoder_b: Optional[str] = None
    unpaired_a: Optional[int] = None  # None = the task's default pool size
    unpaired_b: Optional[int] = None
    grid_size: int = 3
    train: TrainConfig = field(default_factory=TrainConfig)
    neighbourhood_k: int = 10


class EmbeddedTask:
    """A task's items embedded once (through the cache) and looked up by item index."""

    def __init__(self, task: Task, encoder_a, encoder_b, cache: EmbeddingCache):
        self.task, self.encoder_a, self.encoder_b, self.cache = task, encoder_a, encoder_b, cache
        self._a: dict[int, np.ndarray] = {}
        self._b: dict[int, np.ndarray] = {}
        self._prompts: dict[tuple, np.ndarray] = {}

    def ensure(self, a_indices: np.ndarray, b_indices: np.ndarray, progress: Progress = None):
        """Embed (or fetch from the cache) every listed item not yet held in memory."""
        for side, items, encoder, store, idx in (
                ("a", self.task.a, self.encoder_a, self._a, a_indices),
                ("b", self.task.b, self.encoder_b, self._b, b_indices)):
            missing = np.array(sorted(set(np.asarray(idx).tolist()) - store.keys()), np.int64)
            if len(missing) == 0:
                continue
            report = None if progress is None else (
                lambda done, total, side=side: progress({"stage": "embed", "side": side,
                                                         "done": done, "total": total}))
            rows = self.cache.embed(encoder, items, missing, progress=report)
            store.update(zip(missing.tolist(), rows))

    def a(self, idx) -> np.ndarray:
        return _stack(self._a, idx, self.encoder_a.dim)

    def b(self, idx) -> np.ndarray:
        return _stack(self._b, idx, self.encoder_b.dim)

    def prompts(self, zs: ZeroShot) -> np.ndarray:
        """(C, T, d_B) raw embeddings of the class prompts (cached like any text)."""
        key = tuple(map(tuple, zs.prompts))
        if key not in self._prompts:
            flat = [p for prompts in zs.prompts for p in prompts]
            emb = self.cache.embed(self.encoder_b, text_items(flat), np.arange(len(flat)))
            self._prompts[key] = emb.reshape(len(zs.prompts), -1, emb.shape[1])
        return self._prompts[key]


def _stack(store: dict, idx, dim: int) -> np.ndarray:
    idx = np.asarray(idx, np.int64).reshape(-1)
    if len(idx) == 0:
        return np.zeros((0, dim), np.float32)
    return np.stack([store[i] for i in idx.tolist()]).astype(np.float32)


def split_items(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Every A and B item index a split uses."""
    a = [split.train_pairs[:, 0], split.val_pairs[:, 0], split.unpaired_a, split.test_pairs[:, 0]]
    b = [split.train_pairs[:, 1], split.val_pairs[:, 1], split.unpaired_b, split.test_pairs[:, 1]]
    for zs in (split.zero_shot, split.val_zero_shot):
        if zs is not None:
            a.append(zs.a_indices)
    return np.unique(np.concatenate(a)).astype(np.int64), np.unique(np.concatenate(b)).astype(np.int64)


def validation_score(data: EmbeddedTask, split: Split, metric: str) -> Callable[[Alignment], float]:
    """The one validation score every method is tuned and early-stopped on (higher is better).

    ``zero_shot``: mean reciprocal rank of the true class among the class prompts, on the
    validation pairs' A items. ``retrieval``: mean reciprocal rank of the true partner among the
    validation pairs, both directions. Reciprocal rank rather than accuracy: with the handful of
    validation pairs a small budget leaves, accuracy ties constantly and stops nothing.
    """
    if metric == "zero_shot" and split.val_zero_shot is not None:
        zs = split.val_zero_shot
        x, prompts, labels = data.a(zs.a_indices), data.prompts(zs), zs.labels

        def score(alignment: Alignment) -> float:
            sims = zero_shot_scores(alignment, x, prompts)
            return mean_reciprocal_rank(sims, np.eye(sims.shape[1], dtype=bool)[labels])
        return score

    ia, ib = split.val_pairs[:, 0], split.val_pairs[:, 1]
    xa, xb = data.a(ia), data.b(ib)
    correct = pair_matches(ia, ib)

    def score(alignment: Alignment) -> float:
        sims = alignment.embed_a(xa) @ alignment.embed_b(xb).T
        return 0.5 * (mean_reciprocal_rank(sims, correct) + mean_reciprocal_rank(sims.T, correct))
    return score


def test_metrics(alignment: Alignment, data: EmbeddedTask, split: Split, k: int) -> dict[str, float]:
    """Every test metric that applies to the split (zero-shot, retrieval, neighbourhoods)."""
    out: dict[str, float] = {}
    eval_a = []
    if split.zero_shot is not None:
        zs = split.zero_shot
        out.update(zero_shot(alignment, data.a(zs.a_indices), zs.labels, data.prompts(zs)))
        eval_a.append(zs.a_indices)
    if len(split.test_pairs):
        ia, ib = split.test_pairs[:, 0], split.test_pairs[:, 1]
        out.update(retrieval(alignment, data.a(ia), data.b(ib), b_ids=ib, a_ids=ia))
        eval_a.append(ia)
        eval_b = np.unique(ib)
    else:  # class-level tasks hold no test captions: use the caption pool
        eval_b = np.unique(np.concatenate([split.unpaired_b, split.train_pairs[:, 1]]))
    eval_a = np.unique(np.concatenate(eval_a)) if eval_a else split.unpaired_a
    out.update(neighbourhood_metrics(alignment, data.a(eval_a), data.b(eval_b), k=k))
    return out


@dataclass
class SeedData:
    """What every method gets for one seed: the same pairs, pools and validation score."""

    seed: int
    split: Split
    pairs: Pairs
    unpaired: Unpaired
    validate: Optional[Callable[[Alignment], float]]  # None: too few validation pairs to tune on


def prepare_seed(data: EmbeddedTask, split: Split, seed: int) -> SeedData:
    pairs = Pairs(data.a(split.train_pairs[:, 0]), data.b(split.train_pairs[:, 1]))
    unpaired = Unpaired(data.a(split.unpaired_a), data.b(split.unpaired_b))
    # One validation pair ranks first among one candidate whatever the model: no signal, so no
    # tuning and no early stopping for ANY method (reported in the result's config).
    validate = (validation_score(data, split, data.task.val_metric)
                if len(split.val_pairs) >= 2 else None)
    return SeedData(seed, split, pairs, unpaired, validate)


def effective_grid_size(grid_size: int, seed_data: SeedData) -> int:
    """With no validation score there is nothing to choose by: one setting (or none) only."""
    return grid_size if seed_data.validate is not None else min(grid_size, 1)


def method_grid(name: str, seed_data: SeedData, grid_size: int) -> list[dict]:
    grid_size = effective_grid_size(grid_size, seed_data)
    if grid_size == 0:
        return [{}]
    pairs = seed_data.pairs
    return method_class(name).grid(len(pairs), pairs.a.shape[1], pairs.b.shape[1])[:grid_size]


def fit_tuned(name: str, settings: CompareSettings, seed_data: SeedData, progress: Progress = None,
              should_stop: Optional[Callable[[], bool]] = None):
    """Fit ``name`` for each setting of its grid (the first ``grid_size``), keep the best by
    validation score. Returns ``(alignment, chosen_params, val_score, method_object)``."""
    validate, seed = seed_data.validate, seed_data.seed
    best = None
    for params in method_grid(name, seed_data, settings.grid_size):
        kwargs = dict(params)
        if method_class(name).trained:
            kwargs = {"base": replace(settings.train, seed=seed), **params}
        method = get_method(name, **kwargs)
        report = None if progress is None else (
            lambda row, p=params: progress({"stage": "train", "method": name, "seed": seed,
                                            "params": p, **row}))
        alignment = method.fit(seed_data.pairs, seed_data.unpaired, validate=validate,
                               progress=report, should_stop=should_stop)
        val = validate(alignment) if validate else float("nan")
        if best is None or val > best[2]:
            best = (alignment, params, val, method)
        if should_stop is not None and should_stop():
            break
    return best


def summarize(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "values": [float(x) for x in v]}


def compare(settings: CompareSettings, cache: Optional[EmbeddingCache] = None,
            progress: Progress = None, should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """Run the comparison; returns the JSON-ready result (see README for its shape).

    The fitted alignments of the first seed are attached under the private key ``"_alignments"``
    (method → Alignment) for callers that keep them (the app, ``train``); ``to_json`` drops it.
    """
    t0 = time.perf_counter()
    unknown = [m for m in settings.methods if m not in METHODS]
    if unknown:
        raise GeraError(f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
    seeds = list(dict.fromkeys(settings.seeds))  # a repeated seed would only repeat a run
    if not seeds:
        raise GeraError("Give at least one seed.")
    task = get_task(settings.task, **settings.task_options)
    encoder_a = get_encoder(settings.encoder_a or DEFAULT_ENCODERS[task.a.modality], task.a.modality)
    encoder_b = get_encoder(settings.encoder_b or DEFAULT_ENCODERS[task.b.modality], task.b.modality)
    data = EmbeddedTask(task, encoder_a, encoder_b, cache or EmbeddingCache())

    splits = {s: task.split(settings.budget, s, settings.unpaired_a, settings.unpaired_b)
              for s in seeds}
    needed = [split_items(sp) for sp in splits.values()]
    data.ensure(np.concatenate([a for a, _ in needed]), np.concatenate([b for _, b in needed]),
                progress)

    per_method: dict[str, dict] = {m: {"metrics": {}, "chosen": [], "val": [], "steps": [],
                                       "fit_s": []} for m in settings.methods}
    alignments, histories, first = {}, {}, None
    for seed, split in splits.items():
        seed_data = prepare_seed(data, split, seed)
        first = seed_data if first is None else first
        for name in settings.methods:
            t_fit = time.perf_counter()
            alignment, params, val, method = fit_tuned(name, settings, seed_data, progress,
                                                       should_stop)
            if should_stop is not None and should_stop():
                raise GeraError("Cancelled.")
            record = per_method[name]
            record["fit_s"].append(time.perf_counter() - t_fit)
            record["chosen"].append(params)
            record["val"].append(val)
            if method.result is not None:
                record["steps"].append(method.result.best_step)
            if progress is not None:
                progress({"stage": "evaluate", "method": name, "seed": seed})
            for metric, value in test_metrics(alignment, data, split, settings.neighbourhood_k).items():
                record["metrics"].setdefault(metric, []).append(value)
            if seed == seeds[0]:
                alignments[name] = alignment
                histories[name] = method.result.history if method.result is not None else []

    methods_out = {}
    for name, rec in per_method.items():
        methods_out[name] = {
            "metrics": {m: summarize(v) for m, v in rec["metrics"].items()},
            "chosen": rec["chosen"], "val_score": summarize(rec["val"]),
            "best_step": rec["steps"], "fit_s": summarize(rec["fit_s"]),
        }
    result = {
        "task": settings.task, "budget": settings.budget,
        "config": {"seeds": seeds, "methods": list(settings.methods),
                   "encoder_a": encoder_a.name, "encoder_b": encoder_b.name,
                   "grid_size": effective_grid_size(settings.grid_size, first),
                   "grids": {m: method_grid(m, first, settings.grid_size)
                             for m in settings.methods},
                   "validation": task.val_metric if first.validate else
                   "none (fewer than 2 validation pairs: no tuning, no early stopping)",
                   "train": asdict(settings.train),
                   "split": first.split.info, "neighbourhood_k": settings.neighbourhood_k},
        "wall_s": time.perf_counter() - t0,
        "methods": methods_out,
        "paired_differences": paired_differences(methods_out),
        "_alignments": alignments, "_histories": histories,
    }
    ceiling = supervised_ceiling(task, data, first.split)
    if ceiling is not None:
        result["ceiling"] = ceiling
    return result


def paired_differences(methods_out: dict, reference: str = "gera") -> dict:
    """GeRA − each other method, per metric, seed by seed (the values lists share seed order)."""
    if reference not in methods_out:
        return {}
    ref = methods_out[reference]["metrics"]
    out = {}
    for name, rec in methods_out.items():
        if name == reference:
            continue
        out[name] = {m: summarize(np.subtract(ref[m]["values"], s["values"]))
                     for m, s in rec["metrics"].items() if m in ref}
    return out


def supervised_ceiling(task: Task, data: EmbeddedTask, split: Split) -> Optional[dict]:
    """A linear probe on the A encoder with ALL labels of the pools: the headroom a perfect
    alignment could hope for on the zero-shot test set. Only where the task has labels."""
    zs = split.zero_shot
    if task.labels_a is None or zs is None:
        return None
    train_idx = np.concatenate([split.train_pairs[:, 0], split.val_pairs[:, 0], split.unpaired_a])
    acc = linear_probe(data.a(train_idx), task.labels_a[train_idx], data.a(zs.a_indices), zs.labels)
    return {"linear_probe_top1": acc, "n_labels": int(len(train_idx))}


ABLATABLE_SPLIT = ("unpaired_a", "unpaired_b")


def ablate(settings: CompareSettings, param: str, values: Sequence, progress: Progress = None,
           should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """GeRA with ONE setting varied and nothing tuned (grid 0), each value against contrastive-only
    on the same seeds and pairs. ``param`` is a ``TrainConfig`` field (alpha, k, kernel, …) or a
    pool size (``unpaired_a``/``unpaired_b``: the reviewers' missing experiment — vary the
    unpaired pool at a fixed budget)."""
    train_fields = set(asdict(settings.train))
    if param not in train_fields and param not in ABLATABLE_SPLIT:
        raise GeraError(f"Cannot vary {param!r}: choose a training option "
                        f"({', '.join(sorted(train_fields))}) or {' / '.join(ABLATABLE_SPLIT)}.")
    runs = []
    for value in values:
        varied = (replace(settings, **{param: value}) if param in ABLATABLE_SPLIT
                  else replace(settings, train=replace(settings.train, **{param: value})))
        result = to_json(compare(replace(varied, methods=("gera", "contrastive"), grid_size=0),
                                 progress=progress, should_stop=should_stop))
        runs.append({"value": value, **result})
    return {"task": settings.task, "budget": settings.budget, "param": param,
            "values": list(values), "runs": runs}


def to_json(result: dict) -> dict:
    """The result without the in-memory objects (alignments, histories)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
