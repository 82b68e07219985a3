"""Helpers every task shares: cache keys, prompt filling, budget and pool-size rules."""
from __future__ import annotations

import hashlib
import re
from typing import Optional, Sequence

import numpy as np

from gera.errors import GeraError

# CLIP-style templates for class prompts (and, for class-level tasks, for captions).
PHOTO_TEMPLATES = [
    "a photo of a {}.",
    "a bad photo of the {}.",
    "a low resolution photo of a {}.",
    "a black and white photo of a {}.",
    "a close-up photo of the {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a photo of the large {}.",
]

_ARTICLE_BEFORE_SLOT = re.compile(r"\ba \{\}")


def text_key(text: str) -> str:
    """Embedding-cache key of a text: the same caption in any task is embedded once."""
    return "text:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def fill(template: str, name: str) -> str:
    """``template.format(name)``, with "a" turned into "an" before a vowel ("an ankle boot")."""
    if name[:1].lower() in "aeiou":
        template = _ARTICLE_BEFORE_SLOT.sub("an {}", template)
    return template.format(name)


def prompts_for(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """``prompts[c]`` = every template filled with class ``c``'s name."""
    return [[fill(t, name) for t in templates] for name in class_names]


def check_budget(task_name: str, budget: int, max_budget: int) -> None:
    """Refuse a budget outside ``[2, max_budget]`` with a message that names the limits."""
    if not 2 <= budget <= max_budget:
        raise GeraError(
            f"Paired budget {budget} is out of range for task '{task_name}': it serves 2 to "
            f"{max_budget} pairs. Choose a budget in that range.")


def n_val_pairs(budget: int, val_fraction: float) -> int:
    """How many of the ``budget`` pairs become validation pairs (carved out of the budget).

    ``round(val_fraction * budget)``; at least 1 when ``budget >= 5`` and ``val_fraction > 0`` so a
    small budget still has something to validate on; never all of it (one pair stays for training).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise GeraError(f"val_fraction={val_fraction} is invalid: use a value in [0, 1), e.g. 0.2.")
    n_val = int(round(val_fraction * budget))
    if val_fraction > 0 and budget >= 5:
        n_val = max(n_val, 1)
    return min(n_val, budget - 1)


def pool_sizes(task_name: str, requested_a: Optional[int], requested_b: Optional[int],
               default_a: int, default_b: int, available: int) -> tuple[int, int]:
    """Sizes of the unpaired pools when A and B draw from one shared supply of ``available`` items.

    An explicit request is served exactly or refused (a silently smaller pool would mislead a
    pool-size experiment); a default (``None``) shrinks to what is left, A first.
    """
    for side, req in (("unpaired_a", requested_a), ("unpaired_b", requested_b)):
        if req is not None and req < 0:
            raise GeraError(f"{side}={req} is invalid for task '{task_name}': use a count >= 0.")
    explicit = (requested_a or 0) + (requested_b or 0)
    if explicit > available:
        raise GeraError(
            f"Task '{task_name}' has {available} items left for the unpaired pools at this budget, "
            f"but unpaired_a + unpaired_b = {explicit} were requested. Ask for at most {available} "
            "in total (or a smaller budget).")
    size_a = (requested_a if requested_a is not None
              else min(default_a, available - (requested_b or 0)))
    size_b = requested_b if requested_b is not None else min(default_b, available - size_a)
    return size_a, size_b


def pairs_array(a_idx: Sequence[int], b_idx: Sequence[int]) -> np.ndarray:
    """``(n, 2)`` int64 array of (a index, b index)."""
    out = np.empty((len(a_idx), 2), dtype=np.int64)
    out[:, 0] = a_idx
    out[:, 1] = b_idx
    return out


def index_array(idx: Sequence[int]) -> np.ndarray:
    return np.asarray(idx, dtype=np.int64).reshape(-1)
