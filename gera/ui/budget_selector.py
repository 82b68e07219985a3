"""The budget selector the Retrieval and Neighbourhoods tabs share: the paired budgets N shipped
for the chosen model, and beside it a small chart of the task's headline metric against N for
every method, the chosen budget marked."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import gradio as gr

from gera.ui import charts
from gera.ui.budgets import budget_curves
from gera.ui.models import ShippedModels
from gera.ui.sources import SESSION_KEY, budget_choices

LABEL = "Paired budget N"
INFO = "pairs the alignments were trained on"


def _union(shipped: ShippedModels, keys: Iterable[str]) -> list[tuple[str, int]]:
    """Every budget shipped for any of ``keys``: what the API accepts before a callback checks
    the budget against the model it names (the page narrows the list to the chosen model)."""
    budgets = sorted({b for key in keys for b in shipped.budgets(key)})
    return [(f"N = {b}", b) for b in budgets]


class BudgetRadio(gr.Radio):
    """Gradio's radio, whose value the callbacks check rather than Gradio.

    Its choices follow the chosen model, and a search sent while they change (a click just after
    switching models) carries the old model's budget, which Gradio's own check refused ("not in
    the list of choices") before a callback could say which budgets the model has. The callbacks
    check every budget anyway (``ShippedModels.budget_of``: it may come from anyone). A class,
    not an instance patch: Gradio rebuilds a component from its class for each ``gr.update``.
    (Gradio writes a ``.pyi`` stub of it beside this module on import; git ignores it.)"""

    is_template = True  # drawn by the front end's radio

    def preprocess(self, payload):
        return payload


def radio(shipped: ShippedModels, keys: list[str], elem_id: str) -> gr.Radio:
    """The budget radio for a model selector offering ``keys`` (the first one chosen)."""
    first = keys[0] if keys else None
    return BudgetRadio(_union(shipped, keys), value=shipped.default_budget(first) if first else None,
                       label=LABEL, info=INFO, elem_id=elem_id)


def chart(shipped: ShippedModels, results: Path, key: Optional[str],
          budget: Optional[int]) -> tuple[gr.Plot, gr.Markdown]:
    """The chart beside a radio, and the line under it saying where its numbers come from."""
    figure, note = chart_and_note(shipped, results, key, budget)
    return (gr.Plot(figure, label="Label efficiency", show_label=False),
            gr.Markdown(note, elem_classes="gera-note"))


def chart_and_note(shipped: ShippedModels, results: Path, key: Optional[str],
                   budget: Optional[int]) -> tuple:
    """The chart for model ``key`` with ``budget`` marked, and the line saying what it shows."""
    if key == SESSION_KEY or not key:
        return (charts.budget_figure(None, None),
                "Your own run has one budget; the chart covers the shipped checkpoints.")
    curves = budget_curves(shipped, key, results)
    if curves is None:
        return charts.budget_figure(None, None), ""
    return charts.budget_figure(curves, budget), f"<small>{curves.source}</small>"


def for_model(shipped: ShippedModels, results: Path, session, key: Optional[str],
              current: Optional[int] = None) -> tuple:
    """Outputs after the model changed: the radio (that model's budgets; ``current`` kept if
    that model has it, else its default), the chart and the note."""
    choices, default = budget_choices(shipped, session, key)
    value = current if current in [b for _, b in choices] else default
    return (gr.update(choices=choices, value=value),
            *chart_and_note(shipped, results, key, value))
