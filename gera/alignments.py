"""The ``Alignment`` every method returns, and the closed-form ones.

Every method returns an ``Alignment``: it maps RAW encoder embeddings of either modality into one
shared space of unit vectors (``embed_a``, ``embed_b``), so evaluation, retrieval and the app
treat all methods alike. Alignments save to safetensors + JSON (``gera.checkpoint``) and need
none of the training data to load. The trained heads' alignment lives in ``gera.heads`` (torch),
which this module does not import until a checkpoint asks for it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Optional

import numpy as np

from gera.geometry import l2_normalize


class Standardizer:
    """Centre by the pool mean, then L2-normalise: the "original space" of one modality.

    Centring matters for encoders whose features are all positive (ReLU + pooling): without it
    every cosine is high and neighbourhoods are dominated by the shared mean direction.
    """

    def __init__(self, mean: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32)

    @classmethod
    def fit(cls, x: np.ndarray, center: bool = True) -> "Standardizer":
        x = np.asarray(x, dtype=np.float32)
        return cls(x.mean(0) if center else np.zeros(x.shape[1], np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(np.asarray(x, dtype=np.float32) - self.mean)


class Alignment(ABC):
    """A fitted map of both modalities into one shared space.

    ``embed_a(x)`` / ``embed_b(y)`` take raw encoder embeddings ``(n, d_A)`` / ``(n, d_B)`` and return
    float32 unit vectors ``(n, dim)``; cross-modal similarity is their inner product.
    """

    kind: ClassVar[str]  # the name checkpoints store to find the class again
    registry: ClassVar[dict[str, type["Alignment"]]] = {}
    method: str
    # What fitting left (trained methods set these): validation rows {"step", "loss", "val", …}
    # and the step whose state this is. Not saved in checkpoints.
    history: list = []
    best_step: Optional[int] = None
    steps_run: Optional[int] = None
    # What a semi-supervised method did with the unpaired data (pseudo-pairs accepted per round,
    # rounds kept, pool points reached), for reports; not saved in checkpoints.
    diagnostics: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Alignment.registry[cls.kind] = cls

    @abstractmethod
    def embed_a(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def embed_b(self, y: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """``(tensors, config)``: everything needed to rebuild it, as arrays and JSON values."""

    @classmethod
    @abstractmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict) -> "Alignment": ...


def alignment_class(kind: str) -> Optional[type[Alignment]]:
    """The class a checkpoint of ``kind`` rebuilds into (None if unknown)."""
    if kind not in Alignment.registry:
        import gera.heads  # noqa: F401 - registers the heads' alignment (imports torch)
    return Alignment.registry.get(kind)


class LinearAlignment(Alignment):
    """Linear projections of the standardised inputs (Procrustes, CCA): ``(s(x) − offset) · P``."""

    kind = "linear"

    def __init__(self, std_a: Standardizer, std_b: Standardizer, offset_a: np.ndarray,
                 offset_b: np.ndarray, proj_a: np.ndarray, proj_b: np.ndarray, method: str):
        self.std_a, self.std_b = std_a, std_b
        self.offset_a, self.offset_b = offset_a.astype(np.float32), offset_b.astype(np.float32)
        self.proj_a, self.proj_b = proj_a.astype(np.float32), proj_b.astype(np.float32)
        self.method = method

    def embed_a(self, x):
        return l2_normalize((self.std_a(x) - self.offset_a) @ self.proj_a)

    def embed_b(self, y):
        return l2_normalize((self.std_b(y) - self.offset_b) @ self.proj_b)

    def state(self):
        return ({"mean_a": self.std_a.mean, "mean_b": self.std_b.mean, "offset_a": self.offset_a,
                 "offset_b": self.offset_b, "proj_a": self.proj_a, "proj_b": self.proj_b},
                {"method": self.method})

    @classmethod
    def from_state(cls, tensors, config):
        t = tensors
        return cls(Standardizer(t["mean_a"]), Standardizer(t["mean_b"]), t["offset_a"],
                   t["offset_b"], t["proj_a"], t["proj_b"], config["method"])


class RelativeAlignment(Alignment):
    """ASIF's training-free relative representations.

    A query is represented by its cosine similarities to the N anchors of its own modality: keep
    the top ``k``, clamp negatives to 0 (centred features have negative cosines, which an even
    power would turn into spurious matches), raise to the power ``p``, L2-normalise. Anchor i of
    modality A and anchor i of B are a pair, so the two representations share coordinates.
    """

    kind = "relative"

    def __init__(self, std_a: Standardizer, std_b: Standardizer, anchors_a: np.ndarray,
                 anchors_b: np.ndarray, k: int, p: float, method: str = "asif"):
        self.std_a, self.std_b = std_a, std_b
        self.anchors_a, self.anchors_b = anchors_a.astype(np.float32), anchors_b.astype(np.float32)
        self.k, self.p, self.method = int(min(k, len(anchors_a))), float(p), method

    def _relative(self, s: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        sims = s @ anchors.T
        if self.k < sims.shape[1]:
            drop = np.argpartition(-sims, self.k, axis=1)[:, self.k:]
            np.put_along_axis(sims, drop, 0.0, axis=1)
        sims = np.clip(sims, 0.0, None)
        # Scale each row to max 1 before the power so p = 16 cannot underflow the norm. A query
        # with no positive similarity stays all-zero: it scores 0 everywhere and ranks last.
        sims /= np.maximum(sims.max(1, keepdims=True), 1e-12)
        return l2_normalize(sims ** self.p)

    def embed_a(self, x):
        return self._relative(self.std_a(x), self.anchors_a)

    def embed_b(self, y):
        return self._relative(self.std_b(y), self.anchors_b)

    def state(self):
        return ({"mean_a": self.std_a.mean, "mean_b": self.std_b.mean,
                 "anchors_a": self.anchors_a, "anchors_b": self.anchors_b},
                {"k": self.k, "p": self.p, "method": self.method})

    @classmethod
    def from_state(cls, tensors, config):
        t = tensors
        return cls(Standardizer(t["mean_a"]), Standardizer(t["mean_b"]), t["anchors_a"],
                   t["anchors_b"], config["k"], config["p"], config.get("method", "asif"))
