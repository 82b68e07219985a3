"""GeRA and the baselines behind one estimator interface, and the registry of methods.

``Method(**params).fit(pairs, unpaired, validate=...) → Alignment``, scikit-learn style: every
hyperparameter is an explicit keyword of ``__init__`` with its default there, checked at
construction; ``get_params()`` / ``clone(**changes)`` read and vary them. Each method also
declares its tuning grid (``grid()``): the experiment runner gives every method a grid of the SAME
size and the same validation data, so comparisons are fair (method.md, "A fair comparison").

Nothing outside this module decides anything by a method's name: ask the registry
(``METHODS``, ``method_class``, ``featured()``, ``featured_twin()``).
"""
from __future__ import annotations

import functools
import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import Callable, ClassVar, Optional

import numpy as np

from gera.alignments import Alignment, LinearAlignment, RelativeAlignment, Standardizer
from gera.errors import GeraError, require_finite
from gera.memo import memoize_arrays
from gera.settings import TrainConfig
from gera.tuning import SearchSpace, Tuned, tune


@dataclass
class Pairs:
    """Raw embeddings of N pairs: row i of ``a`` is paired with row i of ``b``."""

    a: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        if len(self.a) != len(self.b):
            raise GeraError(f"Pairs need as many A rows as B rows (got {len(self.a)} and {len(self.b)}).")
        require_finite(self.a, "paired A")
        require_finite(self.b, "paired B")

    def __len__(self) -> int:
        return len(self.a)


@dataclass
class Unpaired:
    """Raw embeddings of items with no partner (either side may be empty)."""

    a: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        require_finite(self.a, "unpaired A")
        require_finite(self.b, "unpaired B")


Validate = Optional[Callable[[Alignment], float]]


class Method(ABC):
    """An alignment method: an estimator whose ``__init__`` keywords are its hyperparameters."""

    name: ClassVar[str]  # the registry key, and what results and checkpoints record
    label: ClassVar[str]  # what tables and the app show
    trained: ClassVar[bool] = False  # trained methods use ``validate`` for early stopping
    featured: ClassVar[bool] = False  # the method this studio is about (paired differences)
    selects: ClassVar[bool] = False  # chooses among the other methods rather than fitting its own
    in_default: ClassVar[bool] = True  # in a comparison that names no methods
    fit_cost: ClassVar[int] = 1  # trainings one fit may run at most (job-size limits count these)
    twin_of: ClassVar[Optional[str]] = None  # the method this one equals with its extra term off
    # A fit's rough wall time relative to contrastive-only's (median fit_s per seed in
    # results/emoji-300-fits6.json); only orders work: a comparison spread over workers starts the
    # longest fits first, so no worker is left with a long fit at the end.
    relative_cost: ClassVar[float] = 0.03
    registry: ClassVar[dict[str, type["Method"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Method.registry[cls.name] = cls

    @classmethod
    def param_names(cls) -> list[str]:
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self.param_names()}

    def clone(self, **changes) -> "Method":
        """A new, unfitted method with these hyperparameters changed."""
        return self.create(**{**self.get_params(), **changes})

    @classmethod
    def create(cls, **params) -> "Method":
        """``cls(**params)``, with unknown names refused by one ``GeraError`` listing the known."""
        unknown = sorted(set(params) - set(cls.param_names()) - set(cls._extra_param_names()))
        if unknown:
            raise GeraError(f"{cls.label} has no parameter(s) {unknown}; it takes "
                            f"{', '.join(cls.param_names() + cls._extra_param_names())}.")
        return cls(**params)

    @classmethod
    def _extra_param_names(cls) -> list[str]:
        return []

    @classmethod
    def from_settings(cls, train: TrainConfig, seed: int, **params) -> "Method":
        """The method as a comparison builds it: the shared training settings (used by trained
        methods only), the seed, and a point of its grid."""
        return cls.create(seed=seed, **params)

    @classmethod
    @abstractmethod
    def search_space(cls, n_pairs: int, dim_a: int, dim_b: int) -> SearchSpace:
        """What tuning searches for N training pairs and input dims d_A, d_B (``gera.tuning``):
        its first start setting is the method's defaults, so one fit is "no tuning"."""

    @abstractmethod
    def fit(self, pairs: Pairs, unpaired: Unpaired, validate: Validate = None,
            progress: Optional[Callable[[dict], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None) -> Alignment:
        """The fitted alignment; trained methods leave their history on it."""

    @classmethod
    def fit_together(cls, methods: list["Method"], pairs: Pairs, unpaired: Unpaired,
                     validate: Validate = None,
                     progress: Optional[Callable[[int, dict], None]] = None,
                     should_stop: Optional[Callable[[], bool]] = None) -> list[Alignment]:
        """``[m.fit(…) for m in methods]``, settings of this method on the same data (tuning's
        first settings), fewer when ``should_stop()`` says stop between two; a method that can do
        them at once overrides it. ``progress(i, row)``."""
        fitted = []
        for i, method in enumerate(methods):
            if fitted and should_stop is not None and should_stop():
                break  # cancelled: the fits so far (tuning stops at the last of them)
            fitted.append(method.fit(pairs, unpaired, validate,
                                     None if progress is None else functools.partial(progress, i),
                                     should_stop))
        return fitted

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def _standardizers(pairs: Pairs, unpaired: Unpaired) -> tuple[Standardizer, Standardizer]:
    return (Standardizer.fit(np.concatenate([pairs.a, unpaired.a])),
            Standardizer.fit(np.concatenate([pairs.b, unpaired.b])))


_TRAIN_OPTIONS = [f.name for f in fields(TrainConfig)]


class GeRA(Method):
    """Contrastive alignment + α · geometric regularisation on paired ∪ unpaired points.

    ``config`` holds every training option (``TrainConfig``: α, K, kernel, lr, steps …); any of
    them may also be given as a keyword, which overrides it. ``seed`` seeds the heads and the
    sampling. Tuning searches α, the geometric weight, over [0.1, 100], and ``geo_batch``, the
    anchors per step (how much of the unpaired pools each step sees).
    """

    name, label, trained, featured = "gera", "GeRA", True, True
    relative_cost = 2.0
    SEARCH = SearchSpace({"alpha": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                          "geo_batch": (8, 16, 32, 64)},
                         ({"alpha": 1.0, "geo_batch": 16}, {"alpha": 10.0}, {"alpha": 0.1}))

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0, **options):
        self.config = replace(config or TrainConfig(), **self._checked(options))
        self.seed = int(seed)

    @classmethod
    def _checked(cls, options: dict) -> dict:
        unknown = sorted(set(options) - set(_TRAIN_OPTIONS))
        if unknown:
            raise GeraError(f"Unknown training option(s) {unknown}; known: {sorted(_TRAIN_OPTIONS)}.")
        return options

    @classmethod
    def _extra_param_names(cls) -> list[str]:
        return _TRAIN_OPTIONS

    @classmethod
    def from_settings(cls, train, seed, **params):
        return cls.create(config=train, seed=seed, **params)

    @classmethod
    def search_space(cls, n_pairs, dim_a, dim_b):
        return cls.SEARCH

    def objective(self):
        from gera.objectives import ContrastiveObjective, GeometricObjective

        if self.config.alpha == 0:  # exactly contrastive-only: no graphs, no anchors
            return ContrastiveObjective(self.config.batch_size)
        return GeometricObjective.from_config(self.config)

    def training_objective(self):
        """``objective()`` with the options every objective takes from the config."""
        objective = self.objective()
        objective.multi_positive = self.config.multi_positive
        return objective

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        return self._fit(pairs, unpaired, self.training_objective(), validate, progress,
                         should_stop)

    def _fit(self, pairs, unpaired, objective, validate, progress, should_stop):
        """One run of the shared training loop on ``objective``, its history on the alignment."""
        from gera.train import train  # lazy: keeps torch out of the CLI's start-up

        return _with_history(train(pairs.a, pairs.b, unpaired.a, unpaired.b, objective,
                                   self.config, self.seed, validate, progress, should_stop,
                                   method=self.name))

    stacks: ClassVar[bool] = True  # fit() is one training run on objective(): fit_together may stack

    @classmethod
    def fit_together(cls, methods, pairs, unpaired, validate=None, progress=None,
                     should_stop=None):
        """Stacked into one training run (``gera.train.train_stacked``) where their settings
        allow it and ``TrainConfig.stack_fits`` asks for it (auto: on CUDA); else one by one."""
        from gera.train import can_stack, stacking_wanted, train_stacked

        configs = [m.config for m in methods]
        objectives = [m.training_objective() for m in methods]
        if not (cls.stacks and stacking_wanted(configs[0]) and len(methods) > 1
                and len({m.seed for m in methods}) == 1 and can_stack(objectives, configs)):
            return super().fit_together(methods, pairs, unpaired, validate, progress, should_stop)
        results = train_stacked(pairs.a, pairs.b, unpaired.a, unpaired.b, objectives, configs,
                                methods[0].seed, validate, progress, should_stop, cls.name)
        return [_with_history(result) for result in results]


def _with_history(result) -> Alignment:
    """A training result's alignment, carrying its history, kept step and diagnostics."""
    alignment = result.alignment
    alignment.history, alignment.best_step = result.history, result.best_step
    alignment.steps_run, alignment.diagnostics = result.steps_run, result.diagnostics
    return alignment


class Contrastive(GeRA):
    """The same heads, optimiser, schedule and early stopping with α = 0.

    Tuning searches what it does have, weight decay and the learning rate, with as many fits.
    """

    name, label, featured, twin_of = "contrastive", "contrastive-only", False, "gera"
    relative_cost = 1.0
    SEARCH = SearchSpace({"weight_decay": (0.0, 0.01, 0.1, 1.0, 3.0, 10.0),
                          "lr": (3e-4, 1e-3, 3e-3)},
                         ({"weight_decay": 0.0, "lr": 1e-3}, {"weight_decay": 0.1},
                          {"weight_decay": 1.0}))

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0, **options):
        if options.get("alpha", 0.0) != 0.0:
            raise GeraError("Contrastive-only has no geometric term: alpha is always 0.")
        super().__init__(config, seed, **{**options, "alpha": 0.0})


class Procrustes(Method):
    """Centre and L2-normalise both sides, PCA each to a common d, orthogonal R from the pairs.

    ``dim`` (default None = the cap): the common dimension, capped at min(d_A, d_B, N). PCA is
    fitted on each modality's whole pool (pairs ∪ unpaired), which is data every method is given.
    """

    name, label = "procrustes", "Procrustes"

    def __init__(self, dim: Optional[int] = None, seed: int = 0):
        if dim is not None and int(dim) < 1:
            raise GeraError(f"Procrustes: dim must be at least 1 (got {dim}).")
        self.dim, self.seed = dim, seed

    @classmethod
    def search_space(cls, n_pairs, dim_a, dim_b):
        cap = max(1, min(n_pairs, dim_a, dim_b))
        dims = tuple(sorted({max(1, cap // f) for f in (1, 2, 4, 8, 16, 32)}))
        return SearchSpace({"dim": dims}, tuple({"dim": d} for d in
                                               dict.fromkeys(max(1, cap // f) for f in (1, 2, 4))))

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        std_a, std_b = _standardizers(pairs, unpaired)
        pool_a = std_a(np.concatenate([pairs.a, unpaired.a]))
        pool_b = std_b(np.concatenate([pairs.b, unpaired.b]))
        cap = min(pairs.a.shape[1], pairs.b.shape[1], len(pairs), len(pool_a), len(pool_b))
        dim = int(min(self.dim or cap, cap))
        offset_a, pca_a = _pca(pool_a, dim)
        offset_b, pca_b = _pca(pool_b, dim)
        xa = (std_a(pairs.a) - offset_a) @ pca_a
        xb = (std_b(pairs.b) - offset_b) @ pca_b
        u, _, vt = np.linalg.svd(xa.T @ xb)
        rotation = u @ vt  # argmin ‖xa R − xb‖ over orthogonal R
        return LinearAlignment(std_a, std_b, offset_a, offset_b, pca_a @ rotation, pca_b, self.name)


def _pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``dim`` principal directions of ``x``'s rows."""
    mean, directions = _principal_directions(x)
    return mean, directions[:, :dim]


@memoize_arrays(maxsize=4)
def _principal_directions(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and every principal direction, largest variance first, from the d×d covariance
    (pools are far taller than wide, so this is much cheaper than an SVD of the data). Kept:
    every grid point of Procrustes and CCA PCA's the same pools."""
    mean = x.mean(0)
    centred = (x - mean).astype(np.float64)
    vals, vecs = np.linalg.eigh(centred.T @ centred)
    return mean, vecs[:, np.argsort(vals)[::-1]].astype(np.float32)


class ASIF(Method):
    """Training-free relative representations (Norelli et al. 2022): top-``k`` similarities to
    the paired anchors, raised to the power ``p``. ``k`` (default None = min(800, N)). Tuning
    searches k ∈ {5, 10, 25, 100} % of the anchors and p ∈ {4, 8, 16}: ASIF is a sparse code."""

    name, label = "asif", "ASIF"
    K_CAP = 800

    def __init__(self, k: Optional[int] = None, p: float = 8.0, seed: int = 0):
        if k is not None and int(k) < 1:
            raise GeraError(f"ASIF: k must be at least 1 (got {k}).")
        if float(p) <= 0:
            raise GeraError(f"ASIF: the power p must be positive (got {p}).")
        self.k, self.p, self.seed = k, p, seed

    @classmethod
    def search_space(cls, n_pairs, dim_a, dim_b):
        anchors = min(cls.K_CAP, n_pairs)
        ks = tuple(sorted({max(1, round(anchors * f)) for f in (0.05, 0.1, 0.25, 1.0)}))
        return SearchSpace({"k": ks, "p": (4.0, 8.0, 16.0)},
                           ({"k": anchors, "p": 8.0}, {"k": max(1, round(anchors * 0.25))},
                            {"k": max(1, round(anchors * 0.05)), "p": 16.0}))

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        std_a, std_b = _standardizers(pairs, unpaired)
        return RelativeAlignment(std_a, std_b, std_a(pairs.a), std_b(pairs.b),
                                 self.k or min(self.K_CAP, len(pairs)), self.p, self.name)


class CCA(Method):
    """Regularised linear CCA, a classical reference.

    Each side is reduced by PCA (fitted on its pool) to at most N−1 dimensions first, so the
    covariances are well posed; ``reg`` adds reg·(mean variance)·I to each; ``dim`` canonical
    directions (capped at N−1) are kept, each weighted by its canonical correlation so that
    weakly shared directions count for less. Tuning searches ``reg`` and ``dim``.
    """

    name, label = "cca", "CCA"

    def __init__(self, reg: float = 0.1, dim: int = 128, seed: int = 0):
        if float(reg) < 0 or int(dim) < 1:
            raise GeraError(f"CCA: reg must be ≥ 0 and dim ≥ 1 (got reg={reg}, dim={dim}).")
        self.reg, self.dim, self.seed = reg, dim, seed

    @classmethod
    def search_space(cls, n_pairs, dim_a, dim_b):
        return SearchSpace({"reg": (0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
                            "dim": (8, 16, 32, 64, 128, 256)},
                           ({"reg": 0.1, "dim": 128}, {"reg": 1.0}, {"reg": 0.01}))

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        n = len(pairs)
        if n < 2:
            raise GeraError("CCA needs at least 2 training pairs; raise the budget.")
        std_a, std_b = _standardizers(pairs, unpaired)
        pool_a = std_a(np.concatenate([pairs.a, unpaired.a]))
        pool_b = std_b(np.concatenate([pairs.b, unpaired.b]))
        reduce_to = max(1, min(n - 1, pairs.a.shape[1], pairs.b.shape[1], len(pool_a), len(pool_b)))
        offset_a, pca_a = _pca(pool_a, reduce_to)
        offset_b, pca_b = _pca(pool_b, reduce_to)
        xa = (std_a(pairs.a) - offset_a) @ pca_a
        xb = (std_b(pairs.b) - offset_b) @ pca_b
        # Centre on the pairs, and fold that centring into the offsets so embedding new points
        # applies exactly the map that was fitted (pca has orthonormal columns).
        mean_a, mean_b = xa.mean(0), xb.mean(0)
        xa, xb = xa - mean_a, xb - mean_b
        offset_a, offset_b = offset_a + mean_a @ pca_a.T, offset_b + mean_b @ pca_b.T
        whiten_a = _inv_sqrt(xa.T @ xa / n, float(self.reg))
        whiten_b = _inv_sqrt(xb.T @ xb / n, float(self.reg))
        u, corr, vt = np.linalg.svd(whiten_a @ (xa.T @ xb / n) @ whiten_b)
        dim = min(int(self.dim), reduce_to)
        weight = np.sqrt(corr[:dim])  # similarity = Σ ρ_i a_i b_i: correlated directions count more
        proj_a = pca_a @ whiten_a @ u[:, :dim] * weight
        proj_b = pca_b @ whiten_b @ vt.T[:, :dim] * weight
        return LinearAlignment(std_a, std_b, offset_a, offset_b, proj_a, proj_b, self.name)


def _inv_sqrt(cov: np.ndarray, reg: float) -> np.ndarray:
    cov = cov + reg * max(np.trace(cov) / len(cov), 1e-12) * np.eye(len(cov))
    vals, vecs = np.linalg.eigh(cov)
    return (vecs / np.sqrt(np.maximum(vals, 1e-12))) @ vecs.T


class Structure(GeRA):
    """STRUCTURE (NeurIPS 2025): the same heads, optimiser, schedule and early stopping as GeRA,
    with its multi-scale similarity-preservation term instead of GeRA's local one.

    ``lam``: the term's weight λ, reached after ``warmup_steps`` (linear warm-up); ``levels``:
    random-walk steps compared (1–3); ``tau``: the similarity temperature; ``pool_batch``: points
    of each modality's pool (paired ∪ unpaired) appended to the pairs every step. ``config``,
    ``seed`` and training options as for GeRA (its α is not used). Tuning searches λ and the
    walk levels.
    """

    name, label, featured, twin_of = "structure", "STRUCTURE", False, None
    relative_cost = 3.3
    SEARCH = SearchSpace({"lam": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), "levels": (1, 2, 3)},
                         ({"lam": 10.0, "levels": 2}, {"lam": 1.0}, {"lam": 100.0}))

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0, lam: float = 10.0,
                 levels: int = 2, tau: float = 0.05, warmup_steps: int = 50,
                 pool_batch: int = 256, **options):
        super().__init__(config, seed, **options)
        if not (lam >= 0 and 1 <= int(levels) <= 3 and tau > 0 and warmup_steps >= 0
                and pool_batch >= 0):
            raise GeraError(f"STRUCTURE: lam ≥ 0, levels 1–3, tau > 0, warmup_steps ≥ 0 and "
                            f"pool_batch ≥ 0 (got lam={lam}, levels={levels}, tau={tau}, "
                            f"warmup_steps={warmup_steps}, pool_batch={pool_batch}).")
        self.lam, self.levels, self.tau = float(lam), int(levels), float(tau)
        self.warmup_steps, self.pool_batch = int(warmup_steps), int(pool_batch)

    def objective(self):
        from gera.objectives import StructureObjective

        return StructureObjective(self.lam, self.levels, self.tau, self.warmup_steps,
                                  self.pool_batch, self.config.batch_size)


class PseudoPairing(GeRA):
    """GeRA + confident pseudo-pairs (this project's semi-supervised extension, not the paper's).

    Round 0 fits GeRA (α etc. from ``config``) on the real pairs. Each further round mines
    pseudo-pairs in the current best aligned space — every unpaired A item proposes its best B
    candidate by CSLS, kept if ``mutual`` (the A item is also among that B item's ``per_b`` best)
    and no B item is used more than ``per_b`` times (``gera.pseudo.mine``) — keeps the
    ``ratio · N · 2^(round−1)`` most confident (the set may grow as rounds are kept), and refits
    from scratch on real + pseudo pairs, the pseudo ones weighted ``weight`` in InfoNCE. A round
    is kept only if the validation score (the ``validate`` given to ``fit``: validation pairs
    carved from the budget) beats the best so far; a dropped round leaves the best model as it
    was, and the next round mines a larger set from it. Rounds end early when mining finds
    nothing new. Without ``validate`` no round can be judged, so none is run (plain GeRA).

    ``candidates``: the B items pseudo-partners come from — ``"all"`` (the whole B pool, paired
    captions too: right where captions are class-level) or ``"unpaired"`` (only B items with no
    partner: right where captions are per instance). ``csls_k``: neighbours in the CSLS hubness
    correction. Tuning searches ``candidates``, ``mutual`` and ``weight``.

    The fitted alignment's ``diagnostics``: ``rounds`` (per round: pseudo-pairs accepted, their
    A rows in ``unpaired.a`` and B rows in ``pairs.b ++ unpaired.b``, validation score, kept),
    ``rounds_kept`` (how many improved validation), ``base_val``; its ``history`` holds every round's rows (``round`` key).
    """

    name, label, featured, twin_of = "pseudo", "GeRA + pseudo-pairs", False, None
    in_default = False  # up to 1 + rounds trainings a fit, and it did not beat contrastive-only
    stacks = False  # a fit is several trainings, each on the last one's pseudo-pairs
    fit_cost = 4  # 1 + the default 3 rounds
    relative_cost = 6.0  # up to 1 + 3 trainings, each about a GeRA fit
    CANDIDATES = ("all", "unpaired")
    SEARCH = SearchSpace({"candidates": CANDIDATES, "mutual": (True, False),
                          "weight": (0.25, 0.5, 1.0)},
                         ({"candidates": "all", "mutual": True, "weight": 0.5},
                          {"candidates": "unpaired"}, {"mutual": False}))

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0, rounds: int = 3,
                 per_b: int = 4, ratio: float = 1.0, weight: float = 0.5, mutual: bool = True,
                 candidates: str = "all", csls_k: int = 10, **options):
        super().__init__(config, seed, **options)
        if not (int(rounds) >= 0 and int(per_b) >= 1 and ratio > 0 and 0 < weight <= 1
                and candidates in self.CANDIDATES and int(csls_k) >= 1):
            raise GeraError(f"Pseudo-pairs: rounds ≥ 0, per_b ≥ 1, ratio > 0, 0 < weight ≤ 1, "
                            f"candidates one of {', '.join(self.CANDIDATES)} and csls_k ≥ 1 (got "
                            f"rounds={rounds}, per_b={per_b}, ratio={ratio}, weight={weight}, "
                            f"candidates={candidates!r}, csls_k={csls_k}).")
        self.rounds, self.per_b, self.ratio, self.weight = int(rounds), int(per_b), float(ratio), float(weight)
        self.mutual, self.candidates, self.csls_k = bool(mutual), candidates, int(csls_k)

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        from gera.pseudo import mine

        def report(round_):
            return None if progress is None else (lambda row: progress({**row, "round": round_}))

        best = self._fit(pairs, unpaired, self.training_objective(), validate, report(0),
                         should_stop)
        history = [{**row, "round": 0} for row in best.history]
        steps = best.steps_run
        diagnostics = {"rounds": [], "rounds_kept": 0, "base_val": None,
                       "candidates": self.candidates}
        b_all = np.concatenate([pairs.b, unpaired.b])
        if self.candidates == "all":  # distinct items only: repeated captions would split votes
            _, b_rows = np.unique(b_all, axis=0, return_index=True)
        else:
            b_rows = np.arange(len(pairs), len(b_all))
        if validate is not None:
            best_val = diagnostics["base_val"] = float(validate(best))
            found_before = None
            for round_ in range(1, self.rounds + 1):
                if should_stop is not None and should_stop():
                    break
                limit = int(round(self.ratio * len(pairs) * 2 ** (round_ - 1)))
                found = mine(best.embed_a(unpaired.a), best.embed_b(b_all[b_rows]), self.per_b,
                             limit, self.csls_k, self.mutual)
                info = {"round": round_, "pseudo_pairs": len(found), "a": found.a.tolist(),
                        "b": b_rows[found.b].tolist(), "val": None, "kept": False}
                diagnostics["rounds"].append(info)
                if not len(found) or found_before == found.a.tolist():
                    break  # nothing (new) to add
                objective = self.training_objective()
                objective.pair_weights = np.concatenate(
                    [np.ones(len(pairs)), np.full(len(found), self.weight)]).astype(np.float32)
                augmented = Pairs(np.concatenate([pairs.a, unpaired.a[found.a]]),
                                  np.concatenate([pairs.b, b_all[b_rows[found.b]]]))
                rest = Unpaired(np.delete(unpaired.a, found.a, axis=0), unpaired.b)
                fitted = self._fit(augmented, rest, objective, validate, report(round_), should_stop)
                history += [{**row, "round": round_} for row in fitted.history]
                steps += fitted.steps_run
                info["val"] = float(validate(fitted))
                found_before = found.a.tolist()
                if info["val"] > best_val:
                    info["kept"], best, best_val = True, fitted, info["val"]
                    diagnostics["rounds_kept"] += 1
        best.history, best.steps_run, best.diagnostics = history, steps, diagnostics
        return best


class Propagation(GeRA):
    """GeRA + partner propagation (this project's semi-supervised extension, not the paper's).

    Every step, each paired point's partner is spread over the point's neighbourhood in its own
    modality's frozen pool: the UNPAIRED neighbours get the partner as a soft InfoNCE positive,
    weighted by the anchor's row of GeRA's diffusion operator (same kNN graph, kernel and ε as
    the geometric term; ``PropagationObjective``). ``beta``: the term's weight (0 = GeRA);
    ``spread_batch``: anchors per step. α, K, kernel and the rest from ``config`` as for GeRA
    (α = 0 keeps only InfoNCE + propagation). Tuning searches β.

    The fitted alignment's ``diagnostics``: distinct unpaired pool points that received a
    partner on each side (``spread_seen_a``/``_b``) out of the unpaired pool (``unpaired_pool_a``/``_b``).
    """

    name, label, featured, twin_of = "propagation", "GeRA + propagation", False, None
    relative_cost = 2.2
    SEARCH = SearchSpace({"beta": (0.1, 0.3, 1.0, 3.0, 10.0)},
                         ({"beta": 1.0}, {"beta": 0.3}, {"beta": 3.0}))

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0, beta: float = 1.0,
                 spread_batch: int = 32, **options):
        super().__init__(config, seed, **options)
        if not (beta >= 0 and int(spread_batch) >= 1):
            raise GeraError(f"Propagation: beta ≥ 0 and spread_batch ≥ 1 (got beta={beta}, "
                            f"spread_batch={spread_batch}).")
        self.beta, self.spread_batch = float(beta), int(spread_batch)

    def objective(self):
        from gera.objectives import PropagationObjective

        c = self.config
        return PropagationObjective(self.beta, self.spread_batch, c.alpha, c.k, c.k_pool, c.kernel,
                                    c.divergence, c.geo_batch, c.batch_size, c.eps_a, c.eps_b)


def tune_method(name: str, train: TrainConfig, seed: int, pairs: Pairs, unpaired: Unpaired,
                validate: Validate, fits: int, progress: Optional[Callable[[dict, dict], None]] = None,
                should_stop: Optional[Callable[[], bool]] = None) -> Tuned:
    """``name`` tuned with ``fits`` fits on its search space (``gera.tuning``; fits = 0: the
    settings exactly as given, no search). ``progress(params, row)`` reports training rows."""
    cls = method_class(name)
    space = (cls.search_space(len(pairs), pairs.a.shape[1], pairs.b.shape[1]) if fits > 0
             else SearchSpace({}, ({},)))

    def fit_many(settings: list[dict]) -> list[tuple[Alignment, float]]:
        report = None if progress is None else (lambda i, row: progress(settings[i], row))
        alignments = cls.fit_together([cls.from_settings(train, seed, **p) for p in settings],
                                      pairs, unpaired, validate, report, should_stop)
        return [(a, validate(a) if validate else math.nan) for a in alignments]
    return tune(space, fits if validate is not None else min(fits, 1),
                lambda params: fit_many([params])[0], should_stop, fit_many)


class Auto(Method):
    """The method to pick when you don't know: every other method, each tuned with ``fits``
    fits as in a comparison, and the one with the best validation score kept — validation
    alone decides. ``candidates``: the methods it chooses among (None: all). Without a
    validation score it cannot choose and returns the featured method at its defaults.

    In ``compare`` it costs nothing extra: it chooses among the comparison's own tuned fits.
    """

    name, label, selects, fit_cost = "auto", "auto", True, 0  # in a comparison: the others' fits

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0, fits: int = 6,
                 candidates: Optional[tuple] = None):
        unknown = [c for c in (candidates or ()) if c not in Method.registry or
                   Method.registry[c].selects]
        if int(fits) < 1 or unknown:
            raise GeraError(f"auto: fits ≥ 1 and candidates among the other methods (got "
                            f"fits={fits}, unknown {unknown}).")
        self.config, self.seed, self.fits = config or TrainConfig(), int(seed), int(fits)
        self.candidates = tuple(candidates) if candidates else None

    @classmethod
    def search_space(cls, n_pairs, dim_a, dim_b):
        return SearchSpace({}, ({},))  # its search is the candidates' own

    @classmethod
    def from_settings(cls, train, seed, **params):
        return cls.create(config=train, seed=seed, **params)

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        names = self.candidates or [n for n, c in Method.registry.items() if not c.selects]
        if validate is None:
            names = [featured()]
        tuned = {n: tune_method(n, self.config, self.seed, pairs, unpaired, validate, self.fits,
                                None if progress is None else (lambda p, row: progress(row)),
                                should_stop) for n in names}
        name = Auto.choose({n: t.val_score for n, t in tuned.items()})
        alignment = tuned[name].alignment
        alignment.diagnostics = {**alignment.diagnostics, "chosen_method": name,
                                 "chosen_params": tuned[name].params}
        return alignment

    @staticmethod
    def choose(scores: dict[str, float]) -> str:
        """The method with the best validation score (the first listed on ties; NaN never wins)."""
        return max(scores, key=lambda n: (scores[n] if not math.isnan(scores[n]) else -math.inf,
                                          -list(scores).index(n)))


METHODS = tuple(Method.registry)  # registration order: the order tables and the app list them
DEFAULT_METHODS = tuple(n for n, c in Method.registry.items() if c.in_default)


def method_class(name: str) -> type[Method]:
    if name not in Method.registry:
        raise GeraError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}.")
    return Method.registry[name]


def featured() -> str:
    """The method this studio features: paired differences are taken against it."""
    return next(name for name, cls in Method.registry.items() if cls.featured)


def featured_twin() -> str:
    """The featured method with its extra term switched off (GeRA at α = 0)."""
    return next(name for name, cls in Method.registry.items() if cls.twin_of == featured())


def label(name: str) -> str:
    return method_class(name).label
