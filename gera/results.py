"""Typed results and progress events: what ``compare``, ``ablate`` and a sweep return, and what
they report while they run. The CLI, the app and the tests read these, never private dict keys.

Every result converts to the JSON documented in the README (``to_json``) and back
(``from_json``); the fitted alignments ride along in memory only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from gera.alignments import Alignment
from gera.methods import featured


@dataclass
class Stat:
    """A metric over seeds: mean, sample std, and the values in seed order."""

    mean: float
    std: float
    values: list[float]

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        v = np.asarray(values, dtype=float)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                   [float(x) for x in v])

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "values": self.values}

    @classmethod
    def from_json(cls, d: dict) -> "Stat":
        return cls(d["mean"], d["std"], list(d["values"]))


@dataclass
class FitResult:
    """One method tuned and fitted on one seed, then evaluated on the test data."""

    method: str
    seed: int
    params: dict  # the grid point chosen on validation
    val_score: float  # NaN where there was nothing to validate on
    best_step: Optional[int]  # trained methods: the step early stopping kept
    fit_s: float
    metrics: dict[str, float]
    alignment: Optional[Alignment] = field(default=None, repr=False, compare=False)
    tried: list[dict] = field(default_factory=list)  # tuning's fits: [{"params", "val"}]
    edges: list[str] = field(default_factory=list)  # hyperparameters chosen at an edge
    diagnostics: dict = field(default_factory=dict)  # the kept fit's (pool coverage, ε, …)


@dataclass
class MethodResult:
    """One method over all seeds."""

    metrics: dict[str, Stat]
    chosen: list[dict]
    val_score: Stat
    best_step: list[int]
    fit_s: Stat
    edges: list[list[str]] = field(default_factory=list)  # per seed: chosen at an edge of …
    fits_run: list[int] = field(default_factory=list)  # per seed: tuning's fits
    diagnostics: list[dict] = field(default_factory=list)  # per seed: the kept fit's

    @classmethod
    def from_fits(cls, fits: Sequence[FitResult]) -> "MethodResult":
        names = list(dict.fromkeys(m for f in fits for m in f.metrics))
        return cls({m: Stat.of([f.metrics[m] for f in fits]) for m in names},
                   [f.params for f in fits], Stat.of([f.val_score for f in fits]),
                   [f.best_step for f in fits if f.best_step is not None],
                   Stat.of([f.fit_s for f in fits]), [f.edges for f in fits],
                   [len(f.tried) for f in fits], [f.diagnostics for f in fits])

    def to_json(self) -> dict:
        return {"metrics": {m: s.to_json() for m, s in self.metrics.items()},
                "chosen": self.chosen, "val_score": self.val_score.to_json(),
                "best_step": self.best_step, "fit_s": self.fit_s.to_json(),
                "edges": self.edges, "fits_run": self.fits_run, "diagnostics": self.diagnostics}

    @classmethod
    def from_json(cls, d: dict) -> "MethodResult":
        return cls({m: Stat.from_json(s) for m, s in d["metrics"].items()}, d["chosen"],
                   Stat.from_json(d["val_score"]), d["best_step"], Stat.from_json(d["fit_s"]),
                   d.get("edges", []), d.get("fits_run", []), d.get("diagnostics", []))


def paired_differences(methods: dict[str, MethodResult], reference: str) -> dict[str, dict[str, Stat]]:
    """``reference`` − each other method, per metric, seed by seed (values share seed order)."""
    if reference not in methods:
        return {}
    ref = methods[reference].metrics
    return {name: {m: Stat.of(np.subtract(ref[m].values, s.values))
                   for m, s in rec.metrics.items() if m in ref}
            for name, rec in methods.items() if name != reference}


@dataclass
class CompareResult:
    """A fair comparison at one budget: every method, the same seeds, pairs and tuning budget."""

    task: str
    budget: int
    config: dict  # seeds, methods, encoders, search spaces, validation, train settings, split sizes
    wall_s: float
    methods: dict[str, MethodResult]
    reference: str  # the method paired differences are taken against
    paired_differences: dict[str, dict[str, Stat]]
    ceiling: Optional[dict] = None  # {"linear_probe_top1", "n_labels"} where the task has labels
    alignments: dict[str, Alignment] = field(default_factory=dict, repr=False, compare=False)
    """The first seed's fitted alignment per method (history on each), for the app and ``train``."""

    @property
    def seeds(self) -> list[int]:
        return list(self.config["seeds"])

    def to_json(self) -> dict:
        out = {"task": self.task, "budget": self.budget, "config": self.config,
               "wall_s": self.wall_s, "reference": self.reference,
               "methods": {n: r.to_json() for n, r in self.methods.items()},
               "paired_differences": {n: {m: s.to_json() for m, s in d.items()}
                                      for n, d in self.paired_differences.items()}}
        if self.ceiling is not None:
            out["ceiling"] = self.ceiling
        return out

    @classmethod
    def from_json(cls, d: dict) -> "CompareResult":
        return cls(d["task"], d["budget"], d["config"], d["wall_s"],
                   {n: MethodResult.from_json(r) for n, r in d["methods"].items()},
                   d.get("reference") or featured(),
                   {n: {m: Stat.from_json(s) for m, s in diff.items()}
                    for n, diff in d.get("paired_differences", {}).items()},
                   d.get("ceiling"))


@dataclass
class AblationResult:
    """The featured method with one setting varied, each value against its twin."""

    task: str
    budget: int
    param: str
    values: list
    runs: list[CompareResult]

    def to_json(self) -> dict:
        return {"task": self.task, "budget": self.budget, "param": self.param,
                "values": self.values,
                "runs": [{"value": v, **r.to_json()} for v, r in zip(self.values, self.runs)]}

    @classmethod
    def from_json(cls, d: dict) -> "AblationResult":
        return cls(d["task"], d["budget"], d["param"], d["values"],
                   [CompareResult.from_json(r) for r in d["runs"]])


def result_from_json(payload: Any) -> Union[CompareResult, AblationResult, list[CompareResult]]:
    """Whatever ``compare``, ``ablate`` or a sweep wrote with ``--json``."""
    if isinstance(payload, list):
        return [CompareResult.from_json(r) for r in payload]
    if "runs" in payload:
        return AblationResult.from_json(payload)
    return CompareResult.from_json(payload)


# --- progress events ------------------------------------------------------------------------

@dataclass(frozen=True)
class EmbedProgress:
    """Items of one side embedded (or read from the cache) so far."""

    side: str  # "a" | "b"
    done: int
    total: int


@dataclass(frozen=True)
class FitStarted:
    """A method starts on a seed: fit ``index`` (from 0) of ``total`` in this comparison."""

    method: str
    seed: int
    budget: int
    index: int
    total: int


@dataclass(frozen=True)
class TrainStep:
    """A validation check of a trained method; ``row`` is its history row."""

    method: str
    seed: int
    params: dict
    row: dict


@dataclass(frozen=True)
class Evaluated:
    """A method has been fitted on a seed and is being evaluated on the test data."""

    method: str
    seed: int
    budget: int
    index: int
    total: int


Event = Union[EmbedProgress, FitStarted, TrainStep, Evaluated]


_PARSED: dict[str, tuple[tuple[int, int], Any]] = {}  # path → ((mtime, size), its JSON)


def _read_json(path) -> Any:
    """A results file's JSON (None if unreadable), parsed again only when the file changes: the
    app reads the whole results folder whenever a visitor switches model."""
    import json

    from gera.paths import file_stamp

    stamp = file_stamp(path)
    if stamp is None:
        return None
    cached = _PARSED.get(str(path))
    if cached is None or cached[0] != stamp:
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if len(_PARSED) >= 256:
            _PARSED.clear()
        _PARSED[str(path)] = cached = (stamp, payload)
    return cached[1]


def comparisons_by_budget(folder, task: str, encoders: Optional[tuple[str, str]] = None
                          ) -> tuple[list[CompareResult], list[str]]:
    """The comparisons of ``task`` saved in ``folder`` (``*.json`` written by ``compare`` or
    ``sweep`` with ``--json``; ablations are left out, they vary a setting), one per budget:
    sweeps first, then single comparisons at budgets no sweep has; only those with ``encoders``
    (A, B) where given, so an encoder ablation never joins the curve. Returns the results by
    budget and the names of the files they came from. Unreadable files are skipped. Results
    trained at reduced matmul precision (``--matmul-precision medium``: timing runs, equal within
    seed noise, not to the digit) come after full-precision ones, so they fill gaps only."""
    from pathlib import Path

    found: dict[int, CompareResult] = {}
    sources: list[str] = []
    paths = sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []
    documents = []  # (reduced precision, not a sweep, file name, its comparisons)
    for path in paths:
        payload = _read_json(path)
        try:
            runs = [CompareResult.from_json(r) for r in payload] if isinstance(payload, list) \
                else [] if "runs" in payload else [CompareResult.from_json(payload)]
        except (KeyError, TypeError, AttributeError):
            continue
        reduced = any(r.config.get("train", {}).get("matmul_precision", "highest") != "highest"
                      for r in runs)
        documents.append((reduced, not isinstance(payload, list), path.name, runs))
    documents.sort(key=lambda doc: doc[:2])  # stable: by file name within each kind
    for _, _, name, runs in documents:
        new = [r for r in runs if r.task == task and r.budget not in found and (
            encoders is None or (r.config.get("encoder_a"), r.config.get("encoder_b")) == encoders)]
        for r in new:
            found[r.budget] = r
        if new:
            sources.append(name)
    return [found[b] for b in sorted(found)], sources
