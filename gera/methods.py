"""GeRA and the baselines behind one estimator interface.

``Method(**params).fit(pairs, unpaired, validate=...) → Alignment``. Each method also declares its
tuning grid (``grid()``): the experiment runner gives every method a grid of the SAME size and the
same validation data, so comparisons are fair (method.md, "A fair comparison").
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import Callable, ClassVar, Optional

import numpy as np

from gera.aligners import Alignment, LinearAlignment, RelativeAlignment, Standardizer
from gera.errors import GeraError, require_finite
from gera.train import TrainConfig, TrainResult, train


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


class Method(ABC):
    """An alignment method. ``params`` are its hyperparameters (what ``grid`` varies)."""

    name: ClassVar[str]
    trained: ClassVar[bool] = False  # trained methods use ``validate`` for early stopping
    registry: ClassVar[dict[str, type["Method"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Method.registry[cls.name] = cls

    def __init__(self, **params):
        self.params = params
        self.result: Optional[TrainResult] = None  # trained methods keep their history here

    @classmethod
    @abstractmethod
    def grid(cls, n_pairs: int, dim_a: int, dim_b: int) -> list[dict]:
        """The tuning grid for N training pairs and input dims d_A, d_B; its first point equals the
        method's defaults, so ``grid(...)[:1]`` is "no tuning"."""

    @abstractmethod
    def fit(self, pairs: Pairs, unpaired: Unpaired,
            validate: Optional[Callable[[Alignment], float]] = None,
            progress: Optional[Callable[[dict], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None) -> Alignment: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


def _standardizers(pairs: Pairs, unpaired: Unpaired) -> tuple[Standardizer, Standardizer]:
    return (Standardizer.fit(np.concatenate([pairs.a, unpaired.a])),
            Standardizer.fit(np.concatenate([pairs.b, unpaired.b])))


class GeRA(Method):
    """Contrastive alignment + α · geometric regularisation on paired ∪ unpaired points.

    ``params`` override fields of ``TrainConfig`` (alpha, k, kernel, lr, ...); ``base`` gives
    the rest. The grid varies α, the geometric weight, over one decade either side of 1.
    """

    name = "gera"
    trained = True
    GRID_KEY, GRID = "alpha", (1.0, 10.0, 0.1)

    def __init__(self, base: Optional[TrainConfig] = None, **params):
        super().__init__(**params)
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(params) - known
        if unknown:
            raise GeraError(f"Unknown training option(s) {sorted(unknown)}; known: {sorted(known)}.")
        self.config = replace(base or TrainConfig(), **params)

    @classmethod
    def grid(cls, n_pairs, dim_a, dim_b):
        return [{cls.GRID_KEY: v} for v in cls.GRID]

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        self.result = train(pairs.a, pairs.b, unpaired.a, unpaired.b, self.config, validate,
                            progress, should_stop, method=self.name)
        return self.result.alignment


class Contrastive(GeRA):
    """The same heads, optimiser, schedule and early stopping with α = 0.

    Its grid varies the regulariser it does have, weight decay, over the same number of points.
    """

    name = "contrastive"
    GRID_KEY, GRID = "weight_decay", (0.0, 0.1, 1.0)

    def __init__(self, base: Optional[TrainConfig] = None, **params):
        super().__init__(base, **{**params, "alpha": 0.0})


class Procrustes(Method):
    """Centre and L2-normalise both sides, PCA each to a common d, orthogonal R from the pairs.

    ``dim``: the common dimension, capped at min(d_A, d_B, N). PCA is fitted on each modality's
    whole pool (pairs ∪ unpaired), which is data every method is given.
    """

    name = "procrustes"

    @classmethod
    def grid(cls, n_pairs, dim_a, dim_b):
        cap = max(1, min(n_pairs, dim_a, dim_b))
        return [{"dim": d} for d in dict.fromkeys(max(1, cap // f) for f in (1, 2, 4))]

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        std_a, std_b = _standardizers(pairs, unpaired)
        pool_a = std_a(np.concatenate([pairs.a, unpaired.a]))
        pool_b = std_b(np.concatenate([pairs.b, unpaired.b]))
        dim = int(min(self.params.get("dim", len(pairs)), pairs.a.shape[1], pairs.b.shape[1],
                      len(pairs), len(pool_a), len(pool_b)))  # default: the cap
        offset_a, pca_a = _pca(pool_a, dim)
        offset_b, pca_b = _pca(pool_b, dim)
        xa = (std_a(pairs.a) - offset_a) @ pca_a
        xb = (std_b(pairs.b) - offset_b) @ pca_b
        u, _, vt = np.linalg.svd(xa.T @ xb)
        rotation = u @ vt  # argmin ‖xa R − xb‖ over orthogonal R
        return LinearAlignment(std_a, std_b, offset_a, offset_b, pca_a @ rotation, pca_b, self.name)


def _pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``dim`` principal directions, from the d×d covariance (pools are far taller
    than wide, so this is much cheaper than an SVD of the data)."""
    mean = x.mean(0)
    centred = (x - mean).astype(np.float64)
    vals, vecs = np.linalg.eigh(centred.T @ centred)
    return mean, vecs[:, np.argsort(vals)[::-1][:dim]].astype(np.float32)


class ASIF(Method):
    """Training-free relative representations (Norelli et al. 2022): top-k similarities to the
    paired anchors, raised to the power p. Defaults k = min(800, N), p = 8; the grid varies both."""

    name = "asif"

    @classmethod
    def grid(cls, n_pairs, dim_a, dim_b):
        k = min(800, n_pairs)
        return [{"k": k, "p": 8}, {"k": k, "p": 4}, {"k": max(1, k // 4), "p": 8}]

    def fit(self, pairs, unpaired, validate=None, progress=None, should_stop=None):
        std_a, std_b = _standardizers(pairs, unpaired)
        return RelativeAlignment(std_a, std_b, std_a(pairs.a), std_b(pairs.b),
                                 self.params.get("k", min(800, len(pairs))),
                                 self.params.get("p", 8.0), self.name)


class CCA(Method):
    """Regularised linear CCA, a classical reference.

    Each side is reduced by PCA (fitted on its pool) to at most N−1 dimensions first, so the
    covariances are well posed; ``reg`` adds reg·(mean variance)·I to each; ``dim`` canonical
    directions (default min(N−1, 128)) are kept. The grid varies ``reg``.
    """

    name = "cca"

    @classmethod
    def grid(cls, n_pairs, dim_a, dim_b):
        return [{"reg": r} for r in (0.1, 0.01, 1.0)]

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
        reg = float(self.params.get("reg", 0.1))
        whiten_a = _inv_sqrt(xa.T @ xa / n, reg)
        whiten_b = _inv_sqrt(xb.T @ xb / n, reg)
        u, _, vt = np.linalg.svd(whiten_a @ (xa.T @ xb / n) @ whiten_b)
        dim = min(int(self.params.get("dim", 128)), reduce_to)
        proj_a = pca_a @ whiten_a @ u[:, :dim]
        proj_b = pca_b @ whiten_b @ vt.T[:, :dim]
        return LinearAlignment(std_a, std_b, offset_a, offset_b, proj_a, proj_b, self.name)


def _inv_sqrt(cov: np.ndarray, reg: float) -> np.ndarray:
    cov = cov + reg * max(np.trace(cov) / len(cov), 1e-12) * np.eye(len(cov))
    vals, vecs = np.linalg.eigh(cov)
    return (vecs / np.sqrt(np.maximum(vals, 1e-12))) @ vecs.T


METHODS = tuple(Method.registry)  # ("gera", "contrastive", "procrustes", "asif", "cca")


def method_class(name: str) -> type[Method]:
    if name not in Method.registry:
        raise GeraError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}.")
    return Method.registry[name]


def get_method(name: str, **params) -> Method:
    return method_class(name)(**params)
