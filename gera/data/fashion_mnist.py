"""Fashion-MNIST (Debian ``dataset-fashion-mnist``): images ↔ class-template captions.

A class-level task: every caption is "<template> <class name>", so the text side has only
``10 × len(templates)`` distinct items. It measures zero-shot classification; it cannot measure
instance retrieval (see :class:`FashionMNIST`).
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.data.common import (PHOTO_TEMPLATES, check_budget, fill, index_array, n_val_pairs,
                              pairs_array, pool_sizes, prompts_for, text_key)
from gera.data.options import WholeNumber
from gera.errors import GeraError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
               "bag", "ankle boot"]
N_TRAIN = 60000
N_TEST_MAX = 10000
_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _read_idx(path: Path, magic: int, header_len: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if int.from_bytes(raw[:4], "big") != magic:
        raise GeraError(f"{path} is not an idx file (bad magic number). Reinstall it: "
                        "apt-get install --reinstall dataset-fashion-mnist")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(header_len // 4 - 1)]
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


@lru_cache(maxsize=2)
def load_arrays(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """All 70k images ``(70000, 28, 28)`` uint8 (train then test) and their labels; parsed once."""
    root = Path(data_dir)
    missing = [name for name in _FILES.values() if not (root / name).is_file()]
    if missing:
        raise GeraError(
            f"Fashion-MNIST files are missing from {root}: {', '.join(missing)}. Install them with "
            "`apt-get install dataset-fashion-mnist` (or pass data_dir= pointing at the idx .gz "
            "files).")
    images = np.concatenate([_read_idx(root / _FILES["train_images"], 2051, 16),
                             _read_idx(root / _FILES["test_images"], 2051, 16)])
    labels = np.concatenate([_read_idx(root / _FILES["train_labels"], 2049, 8),
                             _read_idx(root / _FILES["test_labels"], 2049, 8)])
    return images, labels.astype(np.int64)


class FashionMNIST(Task):
    """Task ``fashion-mnist``.

    A items: the 60k train images (indices ``0..59999``) then the official test images
    (``60000..``), 28×28 grey given as RGB. B items: every (class, template) caption, index
    ``class * len(templates) + template``. A pair is a train image with one caption of its class,
    the template drawn by the split's seed.

    Test: zero-shot classification of the first ``n_test`` official test images, prompts = every
    template per class. ``test_pairs`` is empty: with class-level captions, "retrieve this image's
    caption" has ten equally right answers per class, so instance retrieval means nothing here.

    Parameters
    ----------
    n_test : how many official test images the zero-shot test uses (1 … 10000; fewer for quick
        tests).
    data_dir : folder holding the four idx ``.gz`` files.
    templates : caption/prompt templates, ``{}`` = class name.
    """

    name = "fashion-mnist"
    val_metric = "zero_shot"
    default_unpaired_a = 5000
    # Not data_dir (a path) nor templates (str.format strings).
    public_options = {"n_test": WholeNumber(100, N_TEST_MAX)}

    def __init__(self, n_test: int = N_TEST_MAX, data_dir: str | Path = DEFAULT_DIR,
                 templates: Sequence[str] = tuple(PHOTO_TEMPLATES)):
        if not 1 <= n_test <= N_TEST_MAX:
            raise GeraError(f"n_test={n_test} is invalid for fashion-mnist: use 1 to {N_TEST_MAX}.")
        self.n_test = n_test
        self.templates = list(templates)
        self._images, labels = load_arrays(str(data_dir))
        self.labels_a = labels
        self.class_names = list(CLASS_NAMES)
        self.captions = [fill(t, c) for c in CLASS_NAMES for t in self.templates]
        keys = ([f"fmnist:v1:train:{i}" for i in range(N_TRAIN)]
                + [f"fmnist:v1:test:{i}" for i in range(len(labels) - N_TRAIN)])
        self.a = ItemSet("image", keys, self._load_images)
        self.b = ItemSet("text", [text_key(c) for c in self.captions], self._load_captions)

    def _load_images(self, indices: Sequence[int]) -> list:
        return [Image.fromarray(self._images[i]).convert("RGB") for i in indices]

    def _load_captions(self, indices: Sequence[int]) -> list:
        return [self.captions[i] for i in indices]

    def classes(self, side, indices):
        if side == "a":
            return super().classes(side, indices)
        return [self.class_names[int(i) // len(self.templates)] for i in indices]  # c·T + t

    def max_budget(self) -> int:
        return N_TRAIN

    def caption_index(self, label: int, template: int) -> int:
        """B index of the caption of class ``label`` with template ``template``."""
        return label * len(self.templates) + template

    def _zero_shot(self, a_indices: np.ndarray) -> ZeroShot:
        return ZeroShot(self.class_names, prompts_for(self.class_names, self.templates),
                        index_array(a_indices), self.labels_a[a_indices].astype(np.int64))

    def split(self, budget: int, seed: int, unpaired_a: Optional[int] = None,
              unpaired_b: Optional[int] = None, val_fraction: float = 0.2) -> Split:
        """Seeded split: the first ``budget`` images of a permutation of the train set are paired
        (the last ``n_val`` of them validate), the next ``unpaired_a`` form the unpaired image pool.

        ``unpaired_b`` = the captions no pair uses: with class-level captions the pairs already use
        most of the 80, and paired ∪ unpaired captions is always all of them. An explicit
        ``unpaired_b`` larger than that is refused.
        """
        check_budget(self.name, budget, self.max_budget())
        rng = np.random.default_rng(seed)
        order = rng.permutation(N_TRAIN)
        paired = order[:budget]
        captions = self.caption_index(self.labels_a[paired],
                                      rng.integers(0, len(self.templates), size=budget))
        n_val = n_val_pairs(budget, val_fraction)
        n_train = budget - n_val

        free_captions = np.setdiff1d(np.arange(len(self.captions)), captions)
        if unpaired_b is not None and unpaired_b > len(free_captions):
            raise GeraError(
                f"fashion-mnist has only {len(free_captions)} captions that no pair uses at this "
                f"budget and seed (its text side is 80 class-template captions); asked for "
                f"unpaired_b={unpaired_b}. Leave unpaired_b unset or ask for at most "
                f"{len(free_captions)}.")
        size_a, _ = pool_sizes(self.name, unpaired_a, None, self.default_unpaired_a, 0,
                               N_TRAIN - budget)
        size_b = len(free_captions) if unpaired_b is None else unpaired_b
        val_a = paired[n_train:]
        test_a = np.arange(N_TRAIN, N_TRAIN + self.n_test)
        return Split(
            train_pairs=pairs_array(paired[:n_train], captions[:n_train]),
            val_pairs=pairs_array(val_a, captions[n_train:]),
            unpaired_a=index_array(order[budget:budget + size_a]),
            unpaired_b=index_array(rng.permutation(free_captions)[:size_b]),
            test_pairs=pairs_array([], []),
            zero_shot=self._zero_shot(test_a),
            val_zero_shot=self._zero_shot(val_a) if n_val else None,
            info={"task": self.name, "budget": budget, "seed": seed, "n_train": n_train,
                  "n_val": n_val, "n_unpaired_a": size_a, "n_unpaired_b": size_b,
                  "n_test_pairs": 0, "n_zero_shot": self.n_test,
                  "note": "class-level captions: the text pool is the 80 class-template captions"},
        )
