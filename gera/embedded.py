"""A task's items as embeddings: each item embedded once (through the on-disk cache) and looked
up by item index."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from gera.cache import EmbeddingCache
from gera.data import get_task
from gera.data.base import Split, Task, ZeroShot
from gera.data.text import text_items
from gera.encoders import default_encoders, deferred_encoder
from gera.results import EmbedProgress


class EmbeddedTask:
    """A task with its two encoders; ``a(idx)`` / ``b(idx)`` are raw embeddings of those items
    once ``ensure`` has embedded (or fetched) them."""

    def __init__(self, task: Task, encoder_a, encoder_b, cache: EmbeddingCache):
        self.task, self.encoder_a, self.encoder_b, self.cache = task, encoder_a, encoder_b, cache
        self._a: dict[int, np.ndarray] = {}
        self._b: dict[int, np.ndarray] = {}
        self._prompts: dict[tuple, np.ndarray] = {}

    @classmethod
    def open(cls, task_name: str, task_options: Optional[dict] = None,
             encoder_a: Optional[str] = None, encoder_b: Optional[str] = None,
             cache: Optional[EmbeddingCache] = None) -> "EmbeddedTask":
        """The task by name with the named encoders (None: its modalities' defaults)."""
        task = get_task(task_name, **(task_options or {}))
        cache = cache or EmbeddingCache()
        own = task.own_encoders(encoder_a, encoder_b)
        if own is not None:
            return cls(task, *own, cache)
        default_a, default_b = default_encoders(task.a.modality)
        # Deferred: with every embedding cached (a comparison's workers) no model is loaded.
        enc_a = deferred_encoder(encoder_a or default_a, task.a.modality, cache.descriptors)
        enc_b = deferred_encoder(encoder_b or default_b, task.b.modality, cache.descriptors)
        return cls(task, enc_a, enc_b, cache)

    def ensure(self, a_indices: np.ndarray, b_indices: np.ndarray,
               progress: Optional[Callable[[EmbedProgress], None]] = None) -> None:
        """Embed (or fetch from the cache) every listed item not yet held in memory."""
        for side, items, encoder, store, idx in (
                ("a", self.task.a, self.encoder_a, self._a, a_indices),
                ("b", self.task.b, self.encoder_b, self._b, b_indices)):
            missing = np.array(sorted(set(np.asarray(idx).tolist()) - store.keys()), np.int64)
            if len(missing) == 0:
                continue
            report = None if progress is None else (
                lambda done, total, side=side: progress(EmbedProgress(side, done, total)))
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
