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
import re
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
    budget: Optional[int] = None  # the paired budget N the alignments were fitted at

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


def build_gallery(task_name: str, task_options: Mapping[str, object], split: Split,
                  encoder_a: str, encoder_b: str, limit: int,
                  progress: Optional[Callable[[object], None]] = None,
                  cache: Optional[EmbeddingCache] = None) -> tuple[GallerySide, GallerySide, str, str]:
    """Embed a split's gallery (through the embedding cache: usually all hits): both sides, and
    the encoders' full names."""
    data = EmbeddedTask.open(task_name, dict(task_options), encoder_a, encoder_b, cache)
    task = data.task
    a_idx, b_idx = gallery_indices(split, limit)
    data.ensure(a_idx, b_idx, progress)
    side_a = GallerySide(a_idx, data.a(a_idx), task.describe("a", a_idx),
                         task.classes("a", a_idx))
    side_b = GallerySide(b_idx, data.b(b_idx), task.describe("b", b_idx),
                         task.classes("b", b_idx))
    return side_a, side_b, data.encoder_a.name, data.encoder_b.name


def shared_thumbnails() -> Path:
    """Where the shipped model sets' gallery images are rendered: thumbnails of the bundled
    data, the same for every visitor (a visitor's own run renders into their own folder)."""
    return Path(tempfile.gettempdir()) / "gera-thumbnails"


def align_gallery(key: str, title: str, task_name: str, task_options: Mapping[str, object],
                  gallery: tuple[GallerySide, GallerySide, str, str],
                  alignments: Mapping[str, Alignment], metrics: Mapping[str, Mapping[str, float]],
                  thumbnails: Optional[Path] = None, budget: Optional[int] = None) -> ModelSet:
    """A model set from an embedded gallery (``build_gallery``) and the methods' alignments.
    ``thumbnails`` (default: a folder per task under ``shared_thumbnails()``) is where images
    the page shows are written."""
    side_a, side_b, encoder_a, encoder_b = gallery
    ordered = {m: alignments[m] for m in METHODS if m in alignments}
    aligned = {m: (al.embed_a(side_a.raw), al.embed_b(side_b.raw)) for m, al in ordered.items()}
    if thumbnails is None:
        digest = hashlib.sha256(f"{key}|{task_name}|{sorted(task_options.items())}".encode())
        thumbnails = shared_thumbnails() / digest.hexdigest()[:24]
    return ModelSet(key, title, task_name, dict(task_options), encoder_a, encoder_b, ordered,
                    dict(metrics), side_a, side_b, aligned, thumbnails, budget)


def build_model_set(key: str, title: str, task_name: str, task_options: Mapping[str, object],
                    split: Split, encoder_a: str, encoder_b: str,
                    alignments: Mapping[str, Alignment], metrics: Mapping[str, Mapping[str, float]],
                    limit: int, progress: Optional[Callable[[object], None]] = None,
                    cache: Optional[EmbeddingCache] = None,
                    thumbnails: Optional[Path] = None, budget: Optional[int] = None) -> ModelSet:
    """Embed the gallery and align it (``build_gallery`` then ``align_gallery``)."""
    gallery = build_gallery(task_name, task_options, split, encoder_a, encoder_b, limit,
                            progress, cache)
    return align_gallery(key, title, task_name, task_options, gallery, alignments, metrics,
                         thumbnails, budget)


@dataclass(frozen=True)
class ShippedGroup:
    """The checkpoints of one task at one paired budget found in ``checkpoints/``."""

    task_name: str
    modality_a: str
    budget: int
    meta: dict  # the first checkpoint's meta: task, budget, seed, encoders
    alignments: Mapping[str, Alignment]
    metrics: Mapping[str, Mapping[str, float]]

    @property
    def key(self) -> str:
        """What the model selectors store: one per task, whatever the budget."""
        return shipped_key(self.task_name)

    @property
    def title(self) -> str:
        return f"{self.task_name} · shipped checkpoints (N = {self.budget})"


def shipped_key(task_name: str) -> str:
    return f"shipped:{task_name}"


# The budget a task's selector starts at where it is shipped (the app's one budget before there
# were several); else the largest shipped.
DEFAULT_BUDGET = 300


def read_checkpoints(folder: Path) -> list[ShippedGroup]:
    """Every readable checkpoint in ``folder``, grouped by task and budget (both read from each
    checkpoint's meta, never from its file name, so checkpoints named before budgets were in
    the name load too). A damaged file is logged and skipped: one bad checkpoint must not keep
    the app from starting. Groups come by task, smallest budget first."""
    by_group: dict[tuple[str, int], dict] = {}
    for config in sorted(Path(folder).glob("*.json")):
        try:
            alignment, meta = load_alignment(config)
            budget = int(meta.get("budget", 100))
        except (GeraError, TypeError, ValueError) as err:
            log.warning("skipping checkpoint %s: %s", config, err)
            continue
        group = by_group.setdefault((meta.get("task", "?"), budget),
                                    {"meta": meta, "alignments": {}, "metrics": {}})
        method = meta.get("method", alignment.method)
        group["alignments"][method] = alignment
        group["metrics"][method] = meta.get("metrics", {})
    groups = []
    modalities: dict[str, Optional[str]] = {}
    for (task_name, budget), group in sorted(by_group.items()):
        if task_name not in modalities:
            try:
                modalities[task_name] = get_task(
                    task_name, **group["meta"].get("task_options", {})).a.modality
            except GeraError as err:  # e.g. checkpoints of a folder task not on this machine
                log.warning("skipping checkpoints of task %s: %s", task_name, err)
                modalities[task_name] = None
        if modalities[task_name] is None:
            continue
        order = [m for m in METHODS if m in group["alignments"]]
        groups.append(ShippedGroup(task_name, modalities[task_name], budget, group["meta"],
                                   {m: group["alignments"][m] for m in order},
                                   {m: group["metrics"][m] for m in order}))
    return groups


_BUDGET_TEXT = re.compile(r"\d{1,9}")


class ShippedModels:
    """The shipped model sets, one per (task, budget), each built on first use (or by ``warm``)
    and then shared read-only: building one is deterministic, so every session sees the same
    object. A task's budgets share one gallery (embedded once), so the same query is answered
    over the same items at every budget."""

    def __init__(self, folder: Path, limit: int):
        self.groups = {(g.key, g.budget): g for g in read_checkpoints(folder)}
        self.limit = limit
        self._built: dict[tuple[str, int], ModelSet] = {}
        self._galleries: dict[str, tuple] = {}
        # One lock per task: building one (minutes, the first time) never holds up queries on
        # another that is ready.
        self._locks = {key: threading.Lock() for key, _ in self.groups}

    def choices(self, modality: Optional[str] = None) -> list[tuple[str, str]]:
        """``(title, key)`` of the tasks whose A side is ``modality`` (all when None)."""
        seen: dict[str, str] = {}
        for g in self.groups.values():
            if modality in (None, g.modality_a) and g.key not in seen:
                seen[g.key] = f"{g.task_name} · shipped checkpoints"
        return [(title, key) for key, title in seen.items()]

    def budgets(self, key: str) -> list[int]:
        """The budgets shipped for model ``key``, smallest first (none for an unknown key)."""
        return sorted(b for k, b in self.groups if k == key)

    def default_budget(self, key: str) -> Optional[int]:
        budgets = self.budgets(key)
        if not budgets:
            return None
        return DEFAULT_BUDGET if DEFAULT_BUDGET in budgets else budgets[-1]

    def budget_of(self, key: str, budget: object) -> int:
        """``budget`` (a number, or its text from a form or an API call: hostile) as one of the
        budgets shipped for ``key``; ``None`` or "" means the default. Anything else is refused
        with the budgets there are."""
        if key not in self._locks:
            raise GeraError(f"No shipped checkpoints called {key!r}: regenerate them with "
                            "scripts/make_checkpoints.sh.")
        shipped = self.budgets(key)
        if budget is None or (isinstance(budget, str) and not budget.strip()):
            return self.default_budget(key)
        text = str(budget).strip()
        if isinstance(budget, float) and budget.is_integer():
            text = str(int(budget))
        value = int(text) if _BUDGET_TEXT.fullmatch(text) else None
        if value not in shipped:
            task = key.split(":", 1)[-1]
            raise GeraError(f"No shipped {task} checkpoints at N = {text[:20]}: the budgets "
                            f"shipped for {task} are {', '.join(map(str, shipped))}.")
        return value

    def get(self, key: str, budget: object = None) -> ModelSet:
        budget = self.budget_of(key, budget)
        if (key, budget) in self._built:
            return self._built[(key, budget)]
        with self._locks[key]:  # two first queries at once build it once
            if (key, budget) not in self._built:
                g = self.groups[(key, budget)]
                self._built[(key, budget)] = align_gallery(
                    key, g.title, g.task_name, g.meta.get("task_options", {}),
                    self._gallery(key), g.alignments, g.metrics, budget=budget)
            return self._built[(key, budget)]

    def _gallery(self, key: str) -> tuple:
        """The task's gallery, from the split of its smallest shipped budget (held-out items
        do not depend on the budget; the texts that fill up the B side may)."""
        if key not in self._galleries:
            g = self.groups[(key, self.budgets(key)[0])]
            options = g.meta.get("task_options", {})
            split = get_task(g.task_name, **options).split(g.budget, int(g.meta.get("seed", 0)))
            self._galleries[key] = build_gallery(g.task_name, options, split,
                                                 g.meta["encoder_a"], g.meta["encoder_b"],
                                                 self.limit)
        return self._galleries[key]

    def warm(self) -> None:
        """Build every model set now (start-up runs this on a background thread): each task's
        default budget first, what a visitor sees first."""
        keys = list(dict.fromkeys(key for key, _ in self.groups))
        order = [(k, self.default_budget(k)) for k in keys]
        order += [kb for kb in self.groups if kb not in order]
        for key, budget in order:
            try:
                self.get(key, budget)
            except GeraError as err:
                log.warning("could not prepare %s at N = %s: %s", key, budget, err)
