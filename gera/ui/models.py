"""Model sets: fitted alignments of several methods on one task, with the items to search and plot.

A model set comes either from the shipped checkpoints (``checkpoints/``, built once and shared
read-only by every session) or from a user's training run (kept in that user's session). Either
way it holds the RAW encoder embeddings of a bounded gallery of held-out items of both
modalities, and each method's view of them in its aligned space, so a query costs one encoder
call and one matrix product.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from gera.alignments import Alignment
from gera.cache import EmbeddingCache
from gera.checkpoint import load_alignment
from gera.data import get_task
from gera.data.base import Split, Task
from gera.embedded import EmbeddedTask
from gera.errors import GeraError
from gera.methods import METHODS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GallerySide:
    """One modality's gallery: item indices into the task, raw embeddings, texts, classes."""

    indices: np.ndarray
    raw: np.ndarray
    texts: list[str]
    classes: Optional[list[str]]


@dataclass(frozen=True)
class ModelSet:
    """Plain data (arrays, alignments, names): a session holding one pickles, as ZeroGPU needs
    to hand a training job's result from its GPU process back to the app."""

    key: str  # what selectors store: "shipped:<task>" or "session"
    title: str  # what selectors show
    task_name: str
    task_options: Mapping[str, object]
    encoder_a: str
    encoder_b: str
    alignments: Mapping[str, Alignment]  # method → alignment, in METHODS order
    metrics: Mapping[str, Mapping[str, float]]  # method → test metric means, shown beside
    gallery_a: GallerySide
    gallery_b: GallerySide
    aligned: Mapping[str, tuple[np.ndarray, np.ndarray]]  # method → gallery (A, B), aligned
    thumbnails: Path  # where the gallery's A items are rendered for the page, once each

    @property
    def task(self) -> Task:
        return get_task(self.task_name, **self.task_options)  # memoised by the library

    @property
    def modality_a(self) -> str:
        return self.task.a.modality

    def alignment(self, method: str) -> Alignment:
        if method not in self.alignments:
            raise GeraError(f"“{self.title}” has no {method} alignment; choose one of "
                            f"{', '.join(self.alignments)}.")
        return self.alignments[method]


def gallery_indices(split: Split, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out items first: A = test images/clips and zero-shot items; B = test texts, then the
    split's other texts. At most ``limit`` per side, a seeded sample where there are more."""
    rng = np.random.default_rng(seed)
    a_parts = [split.test_pairs[:, 0]]
    if split.zero_shot is not None:
        a_parts.append(split.zero_shot.a_indices)
    a = np.unique(np.concatenate(a_parts)).astype(np.int64)
    if len(a) > limit:
        a = np.sort(rng.choice(a, limit, replace=False))
    test_b = np.unique(split.test_pairs[:, 1]).astype(np.int64)
    others = np.setdiff1d(np.concatenate([split.train_pairs[:, 1], split.val_pairs[:, 1],
                                          split.unpaired_b]), test_b).astype(np.int64)
    if len(test_b) > limit:
        b = np.sort(rng.choice(test_b, limit, replace=False))
    else:
        extra = min(limit - len(test_b), len(others))
        b = np.sort(np.concatenate([test_b, rng.choice(others, extra, replace=False)]))
    return a, b


def build_model_set(key: str, title: str, task_name: str, task_options: Mapping[str, object],
                    split: Split, encoder_a: str, encoder_b: str,
                    alignments: Mapping[str, Alignment], metrics: Mapping[str, Mapping[str, float]],
                    limit: int, progress: Optional[Callable[[object], None]] = None,
                    cache: Optional[EmbeddingCache] = None,
                    thumbnails: Optional[Path] = None) -> ModelSet:
    """Embed the gallery (through the embedding cache: usually all hits) and align it.
    ``thumbnails`` (default: a folder per model set in the temp folder) is where images the
    page shows are written."""
    data = EmbeddedTask.open(task_name, dict(task_options), encoder_a, encoder_b, cache)
    task = data.task
    a_idx, b_idx = gallery_indices(split, limit)
    data.ensure(a_idx, b_idx, progress)
    side_a = GallerySide(a_idx, data.a(a_idx), task.describe("a", a_idx),
                         task.classes("a", a_idx))
    side_b = GallerySide(b_idx, data.b(b_idx), task.describe("b", b_idx),
                         task.classes("b", b_idx))
    ordered = {m: alignments[m] for m in METHODS if m in alignments}
    aligned = {m: (al.embed_a(side_a.raw), al.embed_b(side_b.raw)) for m, al in ordered.items()}
    if thumbnails is None:
        digest = hashlib.sha256(f"{key}|{task_name}|{sorted(task_options.items())}".encode())
        thumbnails = Path(tempfile.gettempdir()) / "gera-thumbnails" / digest.hexdigest()[:24]
    return ModelSet(key, title, task_name, dict(task_options), data.encoder_a.name,
                    data.encoder_b.name, ordered, dict(metrics), side_a, side_b, aligned,
                    thumbnails)


@dataclass(frozen=True)
class ShippedGroup:
    """The checkpoints of one task found in ``checkpoints/``."""

    task_name: str
    modality_a: str
    meta: dict  # the first checkpoint's meta: task, budget, seed, encoders
    alignments: Mapping[str, Alignment]
    metrics: Mapping[str, Mapping[str, float]]

    @property
    def key(self) -> str:
        return f"shipped:{self.task_name}"

    @property
    def title(self) -> str:
        return f"{self.task_name} · shipped checkpoints (N = {self.meta.get('budget', '?')})"


def read_checkpoints(folder: Path) -> list[ShippedGroup]:
    """Every readable checkpoint in ``folder``, grouped by task. A damaged file is logged and
    skipped: one bad checkpoint must not keep the app from starting."""
    by_task: dict[str, dict] = {}
    for config in sorted(Path(folder).glob("*.json")):
        try:
            alignment, meta = load_alignment(config)
        except GeraError as err:
            log.warning("skipping checkpoint %s: %s", config, err)
            continue
        group = by_task.setdefault(meta.get("task", "?"), {"meta": meta, "alignments": {},
                                                           "metrics": {}})
        method = meta.get("method", alignment.method)
        group["alignments"][method] = alignment
        group["metrics"][method] = meta.get("metrics", {})
    groups = []
    for task_name, group in by_task.items():
        try:
            modality = get_task(task_name, **group["meta"].get("task_options", {})).a.modality
        except GeraError as err:  # e.g. checkpoints of a folder task that is not on this machine
            log.warning("skipping checkpoints of task %s: %s", task_name, err)
            continue
        order = [m for m in METHODS if m in group["alignments"]]
        groups.append(ShippedGroup(task_name, modality, group["meta"],
                                   {m: group["alignments"][m] for m in order},
                                   {m: group["metrics"][m] for m in order}))
    return groups


class ShippedModels:
    """The shipped model sets, each built on first use (or by ``warm``) and then shared
    read-only: building one is deterministic, so every session sees the same object."""

    def __init__(self, folder: Path, limit: int):
        self.groups = {g.key: g for g in read_checkpoints(folder)}
        self.limit = limit
        self._built: dict[str, ModelSet] = {}
        # One lock per model set: building one (minutes, the first time) never holds up
        # queries on another that is ready.
        self._locks = {key: threading.Lock() for key in self.groups}

    def choices(self, modality: Optional[str] = None) -> list[tuple[str, str]]:
        """``(title, key)`` of the groups whose A side is ``modality`` (all when None)."""
        return [(g.title, g.key) for g in self.groups.values()
                if modality in (None, g.modality_a)]

    def get(self, key: str) -> ModelSet:
        if key in self._built:
            return self._built[key]
        if key not in self.groups:
            raise GeraError(f"No shipped checkpoints called {key!r}: regenerate them with "
                            "scripts/make_checkpoints.sh.")
        with self._locks[key]:  # two first queries at once build it once
            if key not in self._built:
                g = self.groups[key]
                options = g.meta.get("task_options", {})
                split = get_task(g.task_name, **options).split(int(g.meta.get("budget", 100)),
                                                               int(g.meta.get("seed", 0)))
                self._built[key] = build_model_set(
                    key, g.title, g.task_name, options, split, g.meta["encoder_a"],
                    g.meta["encoder_b"], g.alignments, g.metrics, self.limit)
            return self._built[key]

    def warm(self) -> None:
        """Build every model set now (start-up runs this on a background thread)."""
        for key in self.groups:
            try:
                self.get(key)
            except GeraError as err:
                log.warning("could not prepare %s: %s", key, err)
