"""Label efficiency: what the budget selectors' chart plots for a model — one headline metric
against the paired budget N for every method, from the measured comparisons in ``results/``
(mean ± std over seeds) or, for a task with none, from the shipped checkpoints' own test
metrics (one seed each)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gera.methods import METHODS
from gera.results import comparisons_by_budget
from gera.ui.models import ShippedModels

# The headline per kind of query: an image task is searched with text (text → image), a speech
# task with speech (speech → text); zero-shot where a task has no retrieval test.
HEADLINE = {"image": "recall@1_b2a", "speech": "recall@1_a2b"}
METRIC_NAMES = {"recall@1_b2a": "R@1, text → image", "recall@1_a2b": "R@1, {a} → text",
                "zero_shot_top1": "zero-shot top-1"}


@dataclass(frozen=True)
class BudgetCurves:
    """``series``: method → [(N, mean, std)], in per cent; ``source`` says where they come from."""

    task: str
    metric: str
    metric_name: str
    series: dict[str, list[tuple[int, float, float]]]
    source: str
    shipped: list[int]


def headline_metric(modality_a: str, available) -> str:
    metric = HEADLINE.get(modality_a, "recall@1_a2b")
    return metric if metric in available else "zero_shot_top1"


def budget_curves(shipped: ShippedModels, key: str, results: Path) -> Optional[BudgetCurves]:
    """The chart's data for shipped model ``key`` (None for a key with no shipped budgets)."""
    budgets = shipped.budgets(key)
    if not budgets:
        return None
    groups = [shipped.groups[(key, b)] for b in budgets]
    task, modality = groups[0].task_name, groups[0].modality_a
    encoders = (groups[0].meta.get("encoder_a"), groups[0].meta.get("encoder_b"))
    measured, files = comparisons_by_budget(results, task, encoders if all(encoders) else None)
    if len(measured) < 2:  # one budget is a point, not a curve: no sweep for this task
        measured = []
    available = ({m for r in measured for rec in r.methods.values() for m in rec.metrics}
                 if measured else {m for g in groups for ms in g.metrics.values() for m in ms})
    metric = headline_metric(modality, available)
    name = METRIC_NAMES.get(metric, metric).format(a=modality)
    series: dict[str, list[tuple[int, float, float]]] = {}
    if measured:
        for r in measured:
            for method, rec in r.methods.items():
                if metric in rec.metrics:
                    stat = rec.metrics[metric]
                    series.setdefault(method, []).append((r.budget, 100 * stat.mean,
                                                          100 * stat.std))
        seeds = sorted({len(r.seeds) for r in measured})
        source = (f"measured: results/{', results/'.join(files)} (mean ± std over "
                  f"{'/'.join(map(str, seeds))} seeds)")
    else:
        for g in groups:
            for method, ms in g.metrics.items():
                if metric in ms:
                    series.setdefault(method, []).append((g.budget, 100 * ms[metric], 0.0))
        source = ("no sweep in results/ for this task: these are the shipped checkpoints' own "
                  "test metrics (one seed each)")
    ordered = {m: series[m] for m in METHODS if m in series}
    ordered.update({m: v for m, v in series.items() if m not in ordered})
    return BudgetCurves(task, metric, name, ordered, source, budgets)
