"""Tuning at equal cost: every method gets the same number of fits, spent on a search over its
own hyperparameters, and reports whether its choice sat at an edge of what it searched.

A method describes its search as a ``SearchSpace``: an ordered ladder of values per
hyperparameter and the settings tried first (the first being its defaults). ``tune`` fits those,
then spends the remaining fits one step at a time along the ladders from the best setting so far:
first a step beyond any edge of the tried range the best sits on, then steps between tried values.
A choice still at an edge after the search (the ladder's end, or the budget ran out) is flagged,
so a reader knows a wider search might have found better.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from gera.errors import GeraError


@dataclass(frozen=True)
class SearchSpace:
    """``ladders``: each searched hyperparameter's candidate values, in order (ascending);
    ``start``: the settings tried first, the method's defaults first. Every value in ``start``
    must be on its ladder."""

    ladders: dict[str, tuple]
    start: tuple[dict, ...]

    def __post_init__(self):
        for setting in self.start:
            for name, value in setting.items():
                if name in self.ladders and value not in self.ladders[name]:
                    raise GeraError(f"Search space: {name}={value!r} is not on its ladder "
                                    f"{self.ladders[name]}.")

    def complete(self, setting: dict) -> dict:
        """The setting with every laddered hyperparameter given (the defaults' where absent)."""
        defaults = self.start[0] if self.start else {}
        return {**{n: defaults[n] for n in self.ladders if n in defaults}, **setting}

    def next_step(self, best: dict, tried: list[dict]) -> Optional[dict]:
        """The next setting to try from ``best``: one ladder step beyond the tried range where
        ``best`` sits on its edge, else one step to an untried neighbour; None when the
        neighbourhood of ``best`` is exhausted."""
        beyond, between = [], []
        for name, ladder in self.ladders.items():
            if name not in best:
                continue
            spread = [ladder.index(t[name]) for t in tried if t.get(name) in ladder]
            i = ladder.index(best[name])
            for j in (i + 1, i - 1):
                if not 0 <= j < len(ladder):
                    continue
                candidate = {**best, name: ladder[j]}
                if candidate in tried:
                    continue
                (beyond if j > max(spread) or j < min(spread) else between).append(candidate)
        return (beyond + between or [None])[0]

    def edges(self, best: dict, tried: list[dict]) -> list[str]:
        """The numeric hyperparameters whose chosen value is the lowest or highest of those
        tried (with more than one value on its ladder)."""
        out = []
        for name, ladder in self.ladders.items():
            if any(isinstance(v, (str, bool)) for v in ladder):
                continue  # a choice among kinds has no edge to search beyond
            values = [ladder.index(t[name]) for t in tried if t.get(name) in ladder]
            if name in best and len(ladder) > 1 and len(values) > 0:
                i = ladder.index(best[name])
                if i in (min(values), max(values)):
                    out.append(name)
        return out


def search_json(space: SearchSpace) -> dict:
    return {"ladders": {n: list(v) for n, v in space.ladders.items()},
            "start": [space.complete(s) for s in space.start]}


@dataclass
class Tuned:
    """The best fit by validation, and what the search tried to get there."""

    alignment: Any
    params: dict
    val_score: float
    tried: list[dict] = field(default_factory=list)  # [{"params", "val"}] in the order fitted
    edges: list[str] = field(default_factory=list)  # hyperparameters chosen at an edge


def tune(space: SearchSpace, fits: int, fit: Callable[[dict], tuple[Any, float]],
         should_stop: Optional[Callable[[], bool]] = None,
         fit_many: Optional[Callable[[list[dict]], list[tuple[Any, float]]]] = None) -> Tuned:
    """Spend ``fits`` calls of ``fit(params) → (alignment, validation score)`` on ``space``
    (fewer when the space holds fewer settings); keep the best by validation score. With
    ``fits`` ≤ 1, or a NaN score (nothing to validate on), the defaults alone are fitted.

    ``fit_many(settings) → [(alignment, score), …]``, where given, fits the start settings in one
    call (they are known before any score; a trained method may stack them; fewer results when
    ``should_stop`` cut it short): the search, and what it keeps, are the same as one by one."""
    queue = [space.complete(s) for s in space.start] or [{}]
    budget = max(1, fits)
    tried, scores, best = [], [], None

    def take(params: dict, alignment, val: float) -> bool:
        """Record a fit; True when the search must end here."""
        nonlocal best
        tried.append(params)
        scores.append(val)
        if best is None or val > best.val_score:
            best = Tuned(alignment, params, val)
        return math.isnan(val) or (should_stop is not None and should_stop())

    done = False
    first = [s for i, s in enumerate(queue) if s not in queue[:i]][:budget]
    if fit_many is not None and len(first) > 1:
        done = any(take(p, *result) for p, result in zip(first, fit_many(first)))
    while not done and len(tried) < budget:
        if queue:
            params = queue.pop(0)
        else:
            params = space.next_step(best.params, tried)
            if params is None:
                break
        if params in tried:
            continue
        done = take(params, *fit(params))
    best.tried = [{"params": p, "val": v} for p, v in zip(tried, scores)]
    best.edges = space.edges(best.params, tried) if len(tried) > 1 else []
    return best
