"""Fair comparisons: every method, the same seeds, the same pairs, the same tuning budget.

``compare`` runs, for each seed, one split of the task (validation carved out of the paired
budget), tunes every method on its grid of the same size with the same validation score, keeps
the best setting by validation only, then evaluates it once on the test data. It reports
mean ± std over seeds and the paired difference featured method − each other over the same seeds.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from gera.alignments import Alignment
from gera.cache import EmbeddingCache
from gera.data.base import Split, Task
from gera.embedded import EmbeddedTask, split_items
from gera.errors import GeraError
from gera.evaluate import (distinct_matches, linear_probe, mean_reciprocal_rank,
                           neighbourhood_metrics, retrieval, zero_shot, zero_shot_scores)
from gera.methods import (METHODS, Auto, Pairs, Unpaired, featured, featured_twin, method_class,
                          tune_method)
from gera.results import (AblationResult, CompareResult, Evaluated, Event, FitResult, FitStarted,
                          MethodResult, TrainStep, paired_differences)
from gera.settings import CompareSettings
from gera.tuning import SearchSpace, Tuned, search_json

Progress = Optional[Callable[[Event], None]]
ShouldStop = Optional[Callable[[], bool]]


def validation_score(data: EmbeddedTask, split: Split, metric: str) -> Callable[[Alignment], float]:
    """The one validation score every method is tuned and early-stopped on (higher is better).

    ``zero_shot``: mean reciprocal rank of the true class among the class prompts, on the
    validation pairs' A items. ``retrieval``: mean reciprocal rank of the true partner among the
    distinct items of the validation pairs, both directions (any partner of an item counts). Reciprocal rank rather than accuracy: with the handful of
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
    rows_a, rows_b, correct = distinct_matches(ia, ib)
    xa, xb = data.a(ia[rows_a]), data.b(ib[rows_b])

    def score(alignment: Alignment) -> float:
        sims = alignment.embed_a(xa) @ alignment.embed_b(xb).T
        return 0.5 * (mean_reciprocal_rank(sims, correct)
                      + mean_reciprocal_rank(sims.T, correct.T))
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

    @classmethod
    def prepare(cls, data: EmbeddedTask, split: Split, seed: int) -> "SeedData":
        pairs = Pairs(data.a(split.train_pairs[:, 0]), data.b(split.train_pairs[:, 1]))
        unpaired = Unpaired(data.a(split.unpaired_a), data.b(split.unpaired_b))
        # One validation pair ranks first among one candidate whatever the model: no signal, so
        # no tuning and no early stopping for ANY method (reported in the result's config).
        validate = (validation_score(data, split, data.task.val_metric)
                    if len(split.val_pairs) >= 2 else None)
        return cls(seed, split, pairs, unpaired, validate)

    def fits(self, asked: int) -> int:
        """With no validation score there is nothing to choose by: one setting (or none) only."""
        return asked if self.validate is not None else min(asked, 1)

    def search_space(self, method: str, asked: int) -> SearchSpace:
        """What tuning ``method`` searches here; no fits asked (ablations): nothing at all,
        the settings exactly as given."""
        if self.fits(asked) == 0:
            return SearchSpace({}, ({},))
        return method_class(method).search_space(len(self.pairs), self.pairs.a.shape[1],
                                                 self.pairs.b.shape[1])


def fit_tuned(name: str, settings: CompareSettings, seed_data: SeedData, progress: Progress = None,
              should_stop: ShouldStop = None) -> Tuned:
    """Tune ``name`` with ``settings.grid_size`` fits (``gera.tuning``): the best alignment by
    validation score, its setting, and what the search tried."""
    seed = seed_data.seed
    report = None if progress is None else (
        lambda params, row: progress(TrainStep(name, seed, params, row)))
    return tune_method(name, settings.train, seed, seed_data.pairs, seed_data.unpaired,
                       seed_data.validate, settings.grid_size, report, should_stop)


def compare(settings: CompareSettings, cache: Optional[EmbeddingCache] = None,
            progress: Progress = None, should_stop: ShouldStop = None,
            executor: Optional[Executor] = None) -> CompareResult:
    """Run the comparison (see the module docstring); the first seed's alignments ride along.

    ``executor`` (a ``concurrent.futures.Executor``: local processes, or Ray's through
    ``gera.distributed``) runs the seeds in parallel; without one they run here, one by one.
    """
    return next(compare_many([settings], cache, progress, should_stop, executor))


def compare_many(settings_list: Sequence[CompareSettings], cache: Optional[EmbeddingCache] = None,
                 progress: Progress = None, should_stop: ShouldStop = None,
                 executor: Optional[Executor] = None) -> Iterator[CompareResult]:
    """``compare`` for several settings (a sweep's budgets), yielding each result as it is done.
    With an ``executor``, every seed of every setting is submitted at once, so that the workers
    stay busy across budgets."""
    plans = [ComparePlan.prepare(s, cache, progress) for s in settings_list]
    if executor is None:
        for plan in plans:
            yield plan.finish([run_seed(plan.settings, seed, plan.data,
                                        plan.numbered(progress, position), should_stop,
                                        keep_alignments=position == 0)
                               for position, seed in enumerate(plan.seeds)])
        return
    # One job per (setting, seed, method), each setting's longest first: with seeds as the unit,
    # 5 seeds on 2 workers left one worker idle for the whole last seed. Settings stay in order,
    # so a sweep's budgets finish (and are saved) one after another. A fit depends only on its
    # seed and method, so the numbers do not depend on how the work is cut.
    units = [(index, plan, position, seed, name) for index, plan in enumerate(plans)
             for position, seed in enumerate(plan.seeds) for name in plan.fitted()]
    units.sort(key=lambda u: (u[0], -method_class(u[4]).relative_cost))
    futures = {(id(plan), seed, name): executor.submit(
                   run_seed, plan.settings, seed, plan.cache.root,
                   keep_alignments=position == 0, only=(name,))
               for _, plan, position, seed, name in units}
    for plan in plans:  # here, while the workers fit
        plan.ceiling()
    try:
        for plan in plans:
            per_seed = []
            for position, seed in enumerate(plan.seeds):
                fits = [f for name in plan.fitted()
                        for f in futures[id(plan), seed, name].result()]
                per_seed.append(with_selected(plan.settings, fits, position == 0))
                report = plan.numbered(progress, position)
                for index, fit in enumerate(per_seed[-1] if report else ()):
                    report(Evaluated(fit.method, fit.seed, plan.settings.budget, index, 0))
                if should_stop is not None and should_stop():
                    raise GeraError("Cancelled.")
            yield plan.finish(per_seed)
    finally:  # cancelled, failed or abandoned: leave no queued work behind
        for future in futures.values():
            future.cancel()


@dataclass
class ComparePlan:
    """What a comparison settles before any fit: the checked settings, the task with every
    split's embeddings in the cache, and the seeds."""

    settings: CompareSettings
    data: EmbeddedTask
    cache: EmbeddingCache
    seeds: list[int]
    t0: float

    @classmethod
    def prepare(cls, settings: CompareSettings, cache: Optional[EmbeddingCache] = None,
                progress: Progress = None) -> "ComparePlan":
        t0 = time.perf_counter()
        unknown = [m for m in settings.methods if m not in METHODS]
        if unknown:
            raise GeraError(f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
        seeds = list(dict.fromkeys(settings.seeds))  # a repeated seed would only repeat a run
        settings = replace(settings, methods=tuple(dict.fromkeys(settings.methods)))
        if not seeds:
            raise GeraError("Give at least one seed.")
        cache = cache or EmbeddingCache()
        data = _open_task(settings, cache)
        splits = [_split(data, settings, s) for s in seeds]
        needed = [split_items(split) for split in splits]
        data.ensure(np.concatenate([a for a, _ in needed]), np.concatenate([b for _, b in needed]),
                    progress)
        # The class prompts too, here and once: else every worker would load the text model.
        for zs in (z for split in splits for z in (split.zero_shot, split.val_zero_shot)):
            if zs is not None:
                data.prompts(zs)
        return cls(settings, data, cache, seeds, t0)

    def fitted(self) -> list[str]:
        """The methods that fit (in the settings' order); the selecting ones choose among them."""
        return [m for m in self.settings.methods if not method_class(m).selects]

    def ceiling(self) -> Optional[dict]:
        """The supervised ceiling on the first seed's split (computed once)."""
        if not hasattr(self, "_ceiling"):
            split = _split(self.data, self.settings, self.seeds[0])
            self._ceiling = supervised_ceiling(self.data.task, self.data, split)
        return self._ceiling

    def numbered(self, progress: Progress, position: int) -> Progress:
        """``progress`` for the seed at ``position``: its fits numbered among all the plan's."""
        if progress is None:
            return None
        methods = len(self.settings.methods)

        def report(event: Event) -> None:
            if isinstance(event, (FitStarted, Evaluated)):
                event = replace(event, index=position * methods + event.index,
                                total=len(self.seeds) * methods)
            progress(event)
        return report

    def finish(self, per_seed: list[list[FitResult]]) -> CompareResult:
        settings, data = self.settings, self.data
        first = SeedData.prepare(data, _split(data, settings, self.seeds[0]), self.seeds[0])
        fits = {name: [f for fits in per_seed for f in fits if f.method == name]
                for name in settings.methods}
        methods = {name: MethodResult.from_fits(f) for name, f in fits.items()}
        reference = featured()
        config = {"seeds": self.seeds, "methods": list(settings.methods),
                  "encoder_a": data.encoder_a.name, "encoder_b": data.encoder_b.name,
                  "fits_per_method": first.fits(settings.grid_size),
                  "search": {m: search_json(first.search_space(m, settings.grid_size))
                             for m in settings.methods},
                  "validation": data.task.val_metric if first.validate else
                  "none (fewer than 2 validation pairs: no tuning, no early stopping)",
                  "train": asdict(settings.train), "split": first.split.info,
                  "neighbourhood_k": settings.neighbourhood_k}
        return CompareResult(settings.task, settings.budget, config, time.perf_counter() - self.t0,
                             methods, reference, paired_differences(methods, reference),
                             self.ceiling(),
                             {f.method: f.alignment for fs in fits.values() for f in fs
                              if f.alignment is not None})


def _split(data: EmbeddedTask, settings: CompareSettings, seed: int) -> Split:
    split = data.task.split(settings.budget, seed, settings.unpaired_a, settings.unpaired_b)
    if settings.pool_subset_a is None and settings.pool_subset_b is None:
        return split
    for side, n in (("a", settings.pool_subset_a), ("b", settings.pool_subset_b)):
        pool = getattr(split, f"unpaired_{side}")
        if n is not None and not 0 <= n <= len(pool):
            raise GeraError(f"A nested pool of {n} unpaired {side.upper()} items needs a pool at "
                            f"least that large; the split has {len(pool)}.")
    pool_a = split.unpaired_a[:settings.pool_subset_a]
    pool_b = split.unpaired_b[:settings.pool_subset_b]
    return replace(split, unpaired_a=pool_a, unpaired_b=pool_b,
                   info={**split.info, "n_unpaired_a": len(pool_a), "n_unpaired_b": len(pool_b)})


def _fixed_eps(settings: CompareSettings, data: EmbeddedTask, seed: int) -> CompareSettings:
    """``settings`` with GeRA's ε set from the pairs ∪ the first ``eps_reference`` points of
    each modality's whole unpaired pool (a subset every nested pool of at least that size
    shares), computed as the objective would."""
    if settings.eps_reference is None:
        return settings
    from gera.objectives import NeighbourGraph
    from gera.train import pool_rows

    cfg, n = settings.train, settings.eps_reference
    whole = _split(data, replace(settings, pool_subset_a=None, pool_subset_b=None), seed)
    reference = replace(whole, unpaired_a=whole.unpaired_a[:n], unpaired_b=whole.unpaired_b[:n])
    data.ensure(*split_items(reference))
    ref = SeedData.prepare(data, reference, seed)
    eps = [NeighbourGraph(pool_rows(paired, unpaired, cfg.center)[1], cfg.k, cfg.k_pool).eps
           for paired, unpaired in ((ref.pairs.a, ref.unpaired.a), (ref.pairs.b, ref.unpaired.b))]
    return replace(settings, train=replace(cfg, eps_a=eps[0], eps_b=eps[1]))


def run_seed(settings: CompareSettings, seed: int,
             data: EmbeddedTask | EmbeddingCache | str | None = None,
             progress: Progress = None, should_stop: ShouldStop = None,
             keep_alignments: bool = False, only: Optional[Sequence[str]] = None) -> list[FitResult]:
    """One seed of a comparison: every method tuned on the seed's split and tested once.

    Self-contained: ``data`` is the opened task, or the embedding cache (or its folder, which a
    worker process or a Ray task opens once per process) holding every embedding it needs. Runs
    on one BLAS thread, as training runs on one torch thread: a sum's rounding depends on how
    many threads share it, and a seed must give the same numbers wherever it runs. ``only``:
    fit just these methods (a worker's share of the seed); the selecting ones (``auto``) are
    then left to ``with_selected`` once all of the seed's fits are in.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _run_seed(settings, seed, data, progress, should_stop, keep_alignments, only)


def _run_seed(settings, seed, data, progress, should_stop, keep_alignments, only) -> list[FitResult]:
    if not isinstance(data, EmbeddedTask):
        data = _open_task(settings, data)
    split = _split(data, settings, seed)
    data.ensure(*split_items(split))
    seed_data = SeedData.prepare(data, split, seed)
    settings = _fixed_eps(settings, data, seed)
    fits, total = [], len(settings.methods)
    for index, name in enumerate(settings.methods):
        if method_class(name).selects or (only is not None and name not in only):
            continue  # chosen below, among the fits of the others
        if progress is not None:
            progress(FitStarted(name, seed, settings.budget, index, total))
        t_fit = time.perf_counter()
        tuned = fit_tuned(name, settings, seed_data, progress, should_stop)
        if should_stop is not None and should_stop():
            raise GeraError("Cancelled.")
        fit_s = time.perf_counter() - t_fit
        if progress is not None:
            progress(Evaluated(name, seed, settings.budget, index, total))
        metrics = test_metrics(tuned.alignment, data, split, settings.neighbourhood_k)
        fits.append(FitResult(name, seed, tuned.params, tuned.val_score,
                              tuned.alignment.best_step, fit_s, metrics, tuned.alignment,
                              tried=tuned.tried, edges=tuned.edges,
                              diagnostics=dict(tuned.alignment.diagnostics)))
    if only is not None:
        return _kept(fits, keep_alignments)
    return with_selected(settings, fits, keep_alignments)


def with_selected(settings: CompareSettings, fits: list[FitResult],
                  keep_alignments: bool) -> list[FitResult]:
    """A seed's fits plus those of its selecting methods (``auto``), in the settings' order."""
    chosen = [selected_fit(name, fits) for name in settings.methods
              if method_class(name).selects]
    return _kept(sorted(fits + chosen, key=lambda f: list(settings.methods).index(f.method)),
                 keep_alignments)


def _kept(fits: list[FitResult], keep_alignments: bool) -> list[FitResult]:
    # Alignments travel back from a worker only where asked (the first seed's): they are large.
    return fits if keep_alignments else [replace(f, alignment=None) for f in fits]


_OPENED: dict[tuple, EmbeddedTask] = {}  # a worker process's last tasks (see _open_task)


def _open_task(settings: CompareSettings, cache: EmbeddingCache | str | None) -> EmbeddedTask:
    """The task with its embeddings. Opened from a cache FOLDER (a worker's jobs) it is kept for
    the process's next jobs: a worker runs many (seed, method) jobs of one comparison, and each
    would read the same chunks again."""
    def opened(cache: Optional[EmbeddingCache]) -> EmbeddedTask:
        return EmbeddedTask.open(settings.task, settings.task_options, settings.encoder_a,
                                 settings.encoder_b, cache)

    if cache is None or isinstance(cache, EmbeddingCache):
        return opened(cache)
    key = (settings.task, repr(sorted((settings.task_options or {}).items())),
           settings.encoder_a, settings.encoder_b, str(cache))
    if key not in _OPENED:
        while len(_OPENED) >= 2:  # a sweep's budgets share one; a few tasks interleave at most
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = opened(EmbeddingCache(cache))
    return _OPENED[key]


def selected_fit(name: str, fits: list[FitResult]) -> FitResult:
    """``auto`` in a comparison: the fit with the best validation score among the comparison's
    other methods on this seed, reported under ``name``, costing all their fits."""
    if not fits:
        raise GeraError(f"{name} chooses among the other methods: compare it with at least one.")
    best = {f.method: f for f in fits}[Auto.choose({f.method: f.val_score for f in fits})]
    return replace(best, method=name, params={"method": best.method, **best.params},
                   fit_s=sum(f.fit_s for f in fits), tried=[t for f in fits for t in f.tried],
                   diagnostics={**best.diagnostics, "chosen_method": best.method})


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
POOL_ALIASES = {"pool": "unpaired_a", "pool_a": "unpaired_a", "pool_b": "unpaired_b"}
POOL_COVERAGE = 3  # a pool ablation trains until anchors drawn ≥ this × the largest pool


def ablate(settings: CompareSettings, param: str, values: Sequence, progress: Progress = None,
           should_stop: ShouldStop = None, executor: Optional[Executor] = None) -> AblationResult:
    """The featured method with ONE setting varied and nothing tuned (grid 0), each value against
    its twin (contrastive-only) on the same seeds and pairs. ``param`` is a ``TrainConfig``
    field (alpha, k, kernel, …) or a pool size (``pool``/``pool_a`` = ``unpaired_a``,
    ``pool_b`` = ``unpaired_b``), which runs ``pool_settings``."""
    param = POOL_ALIASES.get(param, param)
    train_fields = set(asdict(settings.train))
    if param not in train_fields and param not in ABLATABLE_SPLIT:
        raise GeraError(f"Cannot vary {param!r}: choose a training option "
                        f"({', '.join(sorted(train_fields))}) or a pool "
                        f"({' / '.join([*POOL_ALIASES, *ABLATABLE_SPLIT])}).")
    if param in ABLATABLE_SPLIT:
        varied = pool_settings(settings, param[-1], [int(v) for v in values])
    else:
        varied = [replace(settings, train=replace(settings.train, **{param: value}))
                  for value in values]
    runs = list(compare_many([replace(v, methods=(featured(), featured_twin()), grid_size=0)
                              for v in varied], progress=progress, should_stop=should_stop,
                             executor=executor))
    return AblationResult(settings.task, settings.budget, param, list(values), runs)


def pool_settings(settings: CompareSettings, side: str, sizes: Sequence[int]) -> list[CompareSettings]:
    """One setting per pool size for a pool ablation that can see its effect:

    - nested pools: every size is the first n of ONE split's pool (drawn at the largest size),
      so a smaller pool is a subset of a larger one and the other modality's pool never moves;
    - ε fixed per seed on the pairs ∪ the smallest non-empty pool (``eps_reference``), so a
      denser pool does not also shrink the kernel;
    - the geometric term covers the pool: a fixed schedule (no early stopping, for both
      methods) long enough that anchors drawn ≥ ``POOL_COVERAGE`` × the largest pool.
    """
    if not sizes or min(sizes) < 0:
        raise GeraError("Pool sizes must be 0 or more (0 = pairs only).")
    largest = max(sizes)
    cfg = settings.train
    steps = max(cfg.max_steps if not cfg.early_stopping else 0,
                math.ceil(POOL_COVERAGE * max(largest, 1) / cfg.geo_batch))
    reference = settings.eps_reference or min([s for s in sizes if s > 0], default=0)
    base = replace(settings, eps_reference=reference,
                   train=replace(cfg, early_stopping=False, max_steps=steps),
                   **{f"unpaired_{side}": largest})
    return [replace(base, **{f"pool_subset_{side}": size}) for size in sizes]
