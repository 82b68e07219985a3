"""Emoji scenes ↔ instance-level captions: the situation GeRA's unpaired data exists for.

Every item is a *spec*: a background colour and 1–3 emoji, each with a size and a position. The
image is the spec rendered on a 112×112 canvas; the caption says what the spec says ("a large cat
face on the left and a small red apple on the right, on a blue background"). A and B are
index-aligned: image ``i`` and caption ``i`` describe spec ``i``. Specs are tiny and drawn from a
seeded generator; images render only when loaded.

A fixed, task-level ~25% of emoji names is *held out*: no caption of any pair (train, validation
or test) contains one, so the only place the aligner can meet them is the unpaired pools. The
zero-shot test classifies renders of held-out emoji among all held-out names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.data.common import (check_budget, index_array, n_val_pairs, pairs_array, pool_sizes,
                              prompts_for, text_key)
from gera.data.emoji_render import DEFAULT_FONT, EmojiRenderer, font_inventory
from gera.data.options import DecimalNumber, WholeNumber
from gera.errors import GeraError

PALETTE = {
    "white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128),
    "red": (215, 40, 40), "orange": (245, 140, 30), "yellow": (250, 215, 40),
    "green": (40, 160, 70), "blue": (40, 90, 215), "purple": (130, 60, 180),
    "pink": (245, 150, 190),
}
CANVAS = 112
SIZES = {"small": 36, "large": 56}  # pixels, on the CANVAS×CANVAS image
_X = {"left": 30, "centre": 56, "right": 82}
_Y = {"top": 30, "centre": 56, "bottom": 82}
# Reading order: the canonical order of a spec's emoji and of the words in its caption.
POSITIONS = {
    "top-left": ("at the top left", (_X["left"], _Y["top"])),
    "top": ("at the top", (_X["centre"], _Y["top"])),
    "top-right": ("at the top right", (_X["right"], _Y["top"])),
    "left": ("on the left", (_X["left"], _Y["centre"])),
    "centre": ("in the centre", (_X["centre"], _Y["centre"])),
    "right": ("on the right", (_X["right"], _Y["centre"])),
    "bottom-left": ("at the bottom left", (_X["left"], _Y["bottom"])),
    "bottom": ("at the bottom", (_X["centre"], _Y["bottom"])),
    "bottom-right": ("at the bottom right", (_X["right"], _Y["bottom"])),
}
_ORDER = {pos: i for i, pos in enumerate(POSITIONS)}
LAYOUTS = {
    2: [("left", "right"), ("top", "bottom"), ("top-left", "bottom-right"),
        ("top-right", "bottom-left"), ("top-left", "top-right"), ("bottom-left", "bottom-right"),
        ("top-left", "bottom-left"), ("top-right", "bottom-right")],
    3: [("left", "centre", "right"), ("top", "centre", "bottom"),
        ("top-left", "centre", "bottom-right"), ("top-right", "centre", "bottom-left"),
        ("top-left", "top-right", "bottom"), ("bottom-left", "bottom-right", "top"),
        ("top-left", "bottom-left", "right"), ("top-right", "bottom-right", "left")],
}
ZERO_SHOT_TEMPLATES = ["an emoji of {}.", "a picture of a {}.", "{}", "an icon showing {}.",
                       "a {} emoji."]
_FRAME_WORDS = {"a", "small", "large", "on", "the", "left", "right", "at", "top", "bottom", "in",
                "centre"}
_WORD = re.compile(r"[a-z0-9]+")


def phrase_pattern(phrase: str) -> str:
    """Regex for ``phrase`` as whole words (so "cat" is not found in "catch")."""
    return r"(?<![a-z0-9])" + re.escape(phrase) + r"(?![a-z0-9])"


@dataclass(frozen=True)
class Spec:
    """One scene: ``items`` = ``((code point, size name, position name), ...)`` in reading order."""

    background: str
    items: tuple[tuple[int, str, str], ...]

    def __str__(self) -> str:
        return "|".join([f"bg={self.background}"]
                        + [f"{cp:x}:{size}:{pos}" for cp, size, pos in self.items])

    def caption(self, names: dict[int, str]) -> str:
        parts = [f"a {size} {names[cp]} {POSITIONS[pos][0]}" for cp, size, pos in self.items]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        article = "an" if self.background[0] in "aeiou" else "a"
        return f"{listed}, on {article} {self.background} background"

    def draw_items(self) -> list[tuple[int, int, tuple[int, int]]]:
        # Large emoji first, so a small one that overlaps stays visible.
        ordered = sorted(self.items, key=lambda it: -SIZES[it[1]])
        return [(cp, SIZES[size], POSITIONS[pos][1]) for cp, size, pos in ordered]


def _containers(names: list[str]) -> list[set[int]]:
    """``out[h]`` = indices of the names whose caption fragment can contain name ``h`` as a phrase.

    A name ``s`` appears in captions as "a <size> s <position phrase>", so ``h`` is at risk when
    found there ("small airplane" sits inside "a small airplane in the centre"). ``h`` itself is
    always included.
    """
    contexts = ["|".join(f"a {size} {s} {phrase}" for size in SIZES for phrase, _ in
                         POSITIONS.values()) for s in names]
    by_word: dict[str, set[int]] = {}
    for i, s in enumerate(names):
        for w in _WORD.findall(s):
            by_word.setdefault(w, set()).add(i)
    out = []
    for h, name in enumerate(names):
        needed = [w for w in _WORD.findall(name) if w not in _FRAME_WORDS]
        candidates = (set.intersection(*(by_word.get(w, set()) for w in needed)) if needed
                      else set(range(len(names))))
        pattern = re.compile(phrase_pattern(name))
        out.append({s for s in candidates if pattern.search(contexts[s])} | {h})
    return out


def choose_held_out(names: list[str], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded set of ~``fraction`` of the names (bool mask) closed under containment: when a
    held-out name could appear inside the caption fragment of another name, that name is held out
    too, so no caption built only from seen names ever contains a held-out name."""
    containers = _containers(names)
    target = int(round(fraction * len(names)))
    held = np.zeros(len(names), dtype=bool)
    for h in rng.permutation(len(names)):
        new = [s for s in containers[h] if not held[s]]
        if new and held.sum() + len(new) <= target:
            held[new] = True
    return held


class Emoji(Task):
    """Task ``emoji``.

    Items, in order: ``renders_per_name`` single-emoji specs per emoji name (name-major), then
    ``n_compositions`` specs of 2–3 emoji. Render 0 of a name is large, centred, on white; render 1
    small, centred, on another colour; further renders random (never centred).

    Fixed per task (``seed``), the same for every split seed so every run tests on the same data:
    the held-out names; the zero-shot test (renders 0 and 1 of every held-out name, classified
    among all held-out names with ``ZERO_SHOT_TEMPLATES``); ``test_pairs`` (``n_test_pairs`` specs
    of seen names only).
    Per split seed: the paired budget is drawn from the remaining seen-only specs; the unpaired
    pools from everything else that is not test data — unpaired specs of seen names and every
    spec that shows a held-out name. Unpaired images and unpaired captions come from different
    specs, so the pools hide no pairs.

    Parameters
    ----------
    n_compositions : how many distinct 2–3-emoji specs to generate.
    renders_per_name : single-emoji specs per name (≥ 2: two are zero-shot test renders).
    held_out_fraction : share of names held out of every paired caption.
    n_test_pairs : size of the fixed retrieval test set.
    seed : task-level seed of the universe (specs, held-out names, test pairs).
    font_path : the Noto Color Emoji TTF.

    Image keys are ``"emoji:v1:<font fingerprint>:<spec>"``: the same spec always renders the same
    pixels with the same font file. Bump ``v1`` when the palette, sizes or positions change.
    """

    name = "emoji"
    val_metric = "retrieval"
    default_unpaired_a = 3000
    default_unpaired_b = 6000
    # Not font_path (a path). n_compositions is capped at its default: composing stops only when
    # that many distinct specs exist, and every spec is rendered and embedded.
    public_options = {"n_compositions": WholeNumber(1000, 12000),
                      "renders_per_name": WholeNumber(2, 5),
                      "held_out_fraction": DecimalNumber(0.1, 0.5),
                      "n_test_pairs": WholeNumber(100, 2000),
                      "seed": WholeNumber(0, 9999)}

    def __init__(self, n_compositions: int = 12000, renders_per_name: int = 3,
                 held_out_fraction: float = 0.25, n_test_pairs: int = 1000, seed: int = 0,
                 font_path: str = str(DEFAULT_FONT)):
        if renders_per_name < 2:
            raise GeraError(f"renders_per_name={renders_per_name} is too small for the emoji "
                            "task: two renders per name are zero-shot test images. Use 2 or more.")
        if not 0.0 < held_out_fraction < 1.0:
            raise GeraError(f"held_out_fraction={held_out_fraction} is invalid: use a value in "
                            "(0, 1), e.g. 0.25.")
        self.renderer = EmojiRenderer(font_path, canvas=CANVAS)
        fingerprint, inventory = font_inventory(str(font_path))
        self.code_points = [cp for cp, _ in inventory]
        self.emoji_names = [name for _, name in inventory]
        rng = np.random.default_rng(seed)
        held = choose_held_out(self.emoji_names, held_out_fraction, rng)
        self.held_out_names = [n for n, h in zip(self.emoji_names, held) if h]

        singles = [self._single(cp, r, rng) for cp in self.code_points
                   for r in range(renders_per_name)]
        self.specs = singles + self._compositions(n_compositions, rng, set(singles))
        name_of = dict(inventory)
        self.captions = [spec.caption(name_of) for spec in self.specs]
        self.a = ItemSet("image", [f"emoji:v1:{fingerprint}:{spec}" for spec in self.specs],
                         self._load_images)
        self.b = ItemSet("text", [text_key(c) for c in self.captions], self._load_captions)

        held_cp = {cp for cp, h in zip(self.code_points, held) if h}
        shows_held = np.array([any(cp in held_cp for cp, _, _ in spec.items)
                               for spec in self.specs])
        held_rows = np.flatnonzero(held)
        self.zero_shot_a = index_array(np.concatenate(
            [held_rows * renders_per_name, held_rows * renders_per_name + 1]))
        self.zero_shot_labels = np.tile(np.arange(len(held_rows), dtype=np.int64), 2)
        seen_only = np.flatnonzero(~shows_held)
        if not 0 < n_test_pairs < len(seen_only):
            raise GeraError(f"n_test_pairs={n_test_pairs} is invalid: this universe has "
                            f"{len(seen_only)} specs of seen names; use fewer test pairs (or more "
                            "compositions).")
        self.test_idx = np.sort(rng.choice(seen_only, size=n_test_pairs, replace=False))
        self.candidates = np.setdiff1d(seen_only, self.test_idx)
        self.held_pool = np.setdiff1d(np.flatnonzero(shows_held), self.zero_shot_a)

    def _single(self, cp: int, render: int, rng: np.random.Generator) -> Spec:
        if render == 0:
            return Spec("white", ((cp, "large", "centre"),))
        if render == 1:
            colour = list(PALETTE)[1 + rng.integers(len(PALETTE) - 1)]
            return Spec(colour, ((cp, "small", "centre"),))
        off_centre = [p for p in POSITIONS if p != "centre"]
        return Spec(list(PALETTE)[rng.integers(len(PALETTE))],
                    ((cp, list(SIZES)[rng.integers(len(SIZES))],
                      off_centre[rng.integers(len(off_centre))]),))

    def _compositions(self, n: int, rng: np.random.Generator, taken: set) -> list[Spec]:
        colours, sizes = list(PALETTE), list(SIZES)
        out: list[Spec] = []
        seen = set(taken)
        while len(out) < n:
            k = 2 + int(rng.integers(2))
            layout = LAYOUTS[k][rng.integers(len(LAYOUTS[k]))]
            cps = rng.choice(len(self.code_points), size=k, replace=False)
            items = sorted(((self.code_points[c], sizes[rng.integers(len(sizes))], pos)
                            for c, pos in zip(cps, layout)), key=lambda it: _ORDER[it[2]])
            spec = Spec(colours[rng.integers(len(colours))], tuple(items))
            if spec not in seen:
                seen.add(spec)
                out.append(spec)
        return out

    def render(self, spec: Spec) -> Image.Image:
        """The 112×112 RGB image of ``spec``."""
        return self.renderer.render(PALETTE[spec.background], spec.draw_items())

    def _load_images(self, indices: Sequence[int]) -> list:
        return [self.render(self.specs[i]) for i in indices]

    def _load_captions(self, indices: Sequence[int]) -> list:
        return [self.captions[i] for i in indices]

    def describe(self, side, indices):
        if side == "b":
            return super().describe(side, indices)
        return [self.captions[int(i)] for i in indices]  # image i and caption i: the same scene

    def classes(self, side, indices):
        return [f"{self.specs[int(i)].background} background" for i in indices]  # spec i, both sides

    def max_budget(self) -> int:
        return len(self.candidates)

    def split(self, budget: int, seed: int, unpaired_a: Optional[int] = None,
              unpaired_b: Optional[int] = None, val_fraction: float = 0.2) -> Split:
        """Seeded split; see the class docstring for what is fixed and what the seed draws."""
        check_budget(self.name, budget, self.max_budget())
        rng = np.random.default_rng(seed)
        order = rng.permutation(self.candidates)
        n_val = n_val_pairs(budget, val_fraction)
        n_train = budget - n_val
        pool = rng.permutation(np.concatenate([order[budget:], self.held_pool]))
        size_a, size_b = pool_sizes(self.name, unpaired_a, unpaired_b, self.default_unpaired_a,
                                    self.default_unpaired_b, len(pool))
        train, val = order[:n_train], order[n_train:budget]
        return Split(
            train_pairs=pairs_array(train, train),
            val_pairs=pairs_array(val, val),
            unpaired_a=index_array(pool[:size_a]),
            unpaired_b=index_array(pool[size_a:size_a + size_b]),
            test_pairs=pairs_array(self.test_idx, self.test_idx),
            zero_shot=ZeroShot(list(self.held_out_names),
                               prompts_for(self.held_out_names, ZERO_SHOT_TEMPLATES),
                               self.zero_shot_a.copy(), self.zero_shot_labels.copy()),
            info={"task": self.name, "budget": budget, "seed": seed, "n_train": n_train,
                  "n_val": n_val, "n_unpaired_a": size_a, "n_unpaired_b": size_b,
                  "n_test_pairs": len(self.test_idx), "n_zero_shot": len(self.zero_shot_a),
                  "n_held_out_names": len(self.held_out_names),
                  "note": "test pairs and held-out names are fixed per task, not per seed"},
        )
