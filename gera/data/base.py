"""What every task (dataset) provides: two item sets, labels where they exist, seeded splits."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

import numpy as np


@dataclass
class ItemSet:
    """The items of one modality of a task, loaded lazily.

    ``keys[i]`` is a stable, unique string naming item ``i`` for the embedding cache: the same key
    must always mean the same content (e.g. ``"fmnist:v1:train:123"``, a hash of a file's bytes, or
    ``"text:" + sha1(text)``). ``load(indices)`` returns the items (PIL RGB images, or ``str``).
    """

    modality: str  # "image" | "text" | "speech"
    keys: list[str]
    load: Callable[[Sequence[int]], list]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class ZeroShot:
    """Zero-shot classification: classify A-side items by the nearest class prompt (text)."""

    class_names: list[str]
    prompts: list[list[str]]  # prompts[c] = the templates filled with class c's name
    a_indices: np.ndarray  # A items to classify (test), int64
    labels: np.ndarray  # their class index into class_names, int64


@dataclass
class Split:
    """One seeded split of a task. All index arrays index into ``task.a`` / ``task.b``.

    ``train_pairs`` + ``val_pairs`` together are the paired-data budget N (validation is carved out
    of the budget, never added to it). ``unpaired_a`` / ``unpaired_b`` hold items with no partner,
    disjoint from every pair's items and from the test items. Test data never overlaps training.
    """

    train_pairs: np.ndarray  # (n_train, 2) int64: (a index, b index)
    val_pairs: np.ndarray  # (n_val, 2)
    unpaired_a: np.ndarray  # (u_a,)
    unpaired_b: np.ndarray  # (u_b,)
    test_pairs: np.ndarray  # (t, 2) for retrieval; may be empty (0, 2)
    zero_shot: Optional[ZeroShot] = None  # test-time zero-shot, if the task has one
    val_zero_shot: Optional[ZeroShot] = None  # same classes, on the validation pairs' A items
    info: dict = field(default_factory=dict)  # sizes and notes, for reports


class Task(ABC):
    """A dataset with two modalities. Subclasses set ``name``, ``a``, ``b`` and implement ``split``.

    ``labels_a``: class index per A item where labels exist (used for the supervised ceiling and
    for colouring plots), else ``None``. ``class_names`` likewise. ``public_options``: the
    constructor options a visitor of a public app may set, with their ranges
    (``gera.data.options``); none unless a task lists them.
    """

    name: str
    a: ItemSet
    b: ItemSet
    labels_a: Optional[np.ndarray] = None
    class_names: Optional[list[str]] = None
    # "zero_shot" (validation = zero-shot accuracy on the validation pairs) or "retrieval".
    val_metric: str = "retrieval"
    default_unpaired_a: int = 5000
    default_unpaired_b: int = 5000
    public_options: Mapping[str, object] = MappingProxyType({})

    @abstractmethod
    def max_budget(self) -> int:
        """The largest paired budget this task can serve."""

    @abstractmethod
    def split(self, budget: int, seed: int, unpaired_a: Optional[int] = None,
              unpaired_b: Optional[int] = None, val_fraction: float = 0.2) -> Split:
        """A seeded split. Raises ``GeraError`` if ``budget`` exceeds ``max_budget()``."""

    def own_encoders(self, encoder_a: Optional[str], encoder_b: Optional[str]):
        """The task's own (A, B) encoders where its items come as embeddings (a snapshot,
        ``gera.snapshot``), else None: the named encoders embed the items."""
        return None

    def describe(self, side: str, indices: Sequence[int]) -> list[str]:
        """A short text per item, for hovers and galleries: the text itself on the B side; what
        an A item shows where the task knows (its class here; tasks that know more say more)."""
        indices = [int(i) for i in indices]
        if side == "b":
            return [str(t) for t in self.b.load(indices)]
        if self.labels_a is not None and self.class_names is not None:
            return [self.class_names[self.labels_a[i]] for i in indices]
        return [f"item {i}" for i in indices]

    def classes(self, side: str, indices: Sequence[int]) -> Optional[list[str]]:
        """A class per item to colour plots by, or None when the task has no natural one."""
        if side == "a" and self.labels_a is not None and self.class_names is not None:
            return [self.class_names[self.labels_a[int(i)]] for i in indices]
        return None
