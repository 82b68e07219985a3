"""The Neighbourhoods tab: UMAP before/after alignment, the joint space, per-point kNN Jaccard."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from gera.methods import METHODS, featured
from gera.ui import budget_selector
from gera.ui.errors import errors_as_ui
from gera.ui.limits import RateLimiter, visitor_of
from gera.ui.models import ShippedModels
from gera.ui.neighbourhoods import compute_view, figures
from gera.ui.sources import resolve
from gera.ui.theme import CLICKABLE_PLOT_CLASS, SELECTED_POINT_ID


@dataclass
class NeighbourhoodsTab:
    source: gr.Dropdown


def build(shipped: ShippedModels, session: gr.State, tab: gr.Tab,
          queries: RateLimiter, results: Path) -> NeighbourhoodsTab:
    choices = shipped.choices()
    first = choices[0][1] if choices else None
    gr.Markdown("Each modality's points before alignment (the encoder's own space) and after it, "
                "side by side: the same points, projected by UMAP on their exact cosine kNN graph. "
                "Colour by class, or by how many of each point's k nearest neighbours survive "
                "alignment (kNN Jaccard). Click a point, or type its number, to see its "
                "neighbours before (red ○) and after (blue ◇) in both views. Switch the paired "
                "budget N to see the same points aligned from fewer or more pairs.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                source = gr.Dropdown(choices, value=first, label="Model", scale=2)
                method = gr.Dropdown(list(METHODS), value=featured(), label="Method")
            budget = budget_selector.radio(shipped, [key for _, key in choices], "nbhd-budget")
            with gr.Row():
                side = gr.Radio([("image / speech side", "a"), ("text side", "b")], value="a",
                                label="Modality")
                colour = gr.Radio([("class", "class"), ("kNN Jaccard", "jaccard")],
                                  value="class", label="Colour by")
        with gr.Column(scale=2, min_width=320):
            chart, note = budget_selector.chart(shipped, results, first, budget.value)
    with gr.Row():
        n_points = gr.Slider(100, 3000, value=1000, step=100, label="Points")
        k = gr.Slider(5, 50, value=10, step=1, label="k (neighbours)")
        selected = gr.Number(None, label="Selected point", precision=0, minimum=0,
                             elem_id=SELECTED_POINT_ID)
        compute = gr.Button("Project", variant="primary")
    with gr.Row():
        before = gr.Plot(label="Before alignment", elem_classes=CLICKABLE_PLOT_CLASS)
        after = gr.Plot(label="After alignment", elem_classes=CLICKABLE_PLOT_CLASS)
    with gr.Row():
        with gr.Column():
            summary = gr.Markdown(elem_id="nbhd-summary")
            histogram = gr.Plot(label="kNN Jaccard histogram")
        with gr.Column():
            joint = gr.Plot(label="Joint aligned space")
            centred = gr.Checkbox(False, label="Centre each modality (subtract its mean in the "
                                               "aligned space, re-normalise)")
            gap_note = gr.Markdown(elem_id="nbhd-gap")
    view_state = gr.State(None)  # this user's last projection: redraws need no recomputation
    plots = [before, after, joint, histogram, summary, gap_note]

    @errors_as_ui
    def project(session_value, model, budget, method, modality, points, k, colour_by, centre,
                request: gr.Request):
        queries.check(visitor_of(request))
        models = resolve(shipped, session_value, model, budget)
        models.alignment(method)
        view = compute_view(models, method, modality, int(points), int(k), bool(centre))
        return (view, None, *figures(view, colour_by, None),
                budget_selector.chart_and_note(shipped, results, model, models.budget)[0])

    @errors_as_ui
    def redraw(view, colour_by, point):
        if view is None:
            return [gr.skip()] * len(plots)
        point = None if point is None else int(point)
        if point is not None and not 0 <= point < len(view.texts):
            gr.Warning(f"There are {len(view.texts)} points: choose 0 to {len(view.texts) - 1}.")
            point = None
        return figures(view, colour_by, point)

    project_inputs = [session, source, budget, method, side, n_points, k, colour, centred]
    project_outputs = [view_state, selected, *plots, chart]
    compute.click(project, project_inputs, project_outputs, api_name="neighbourhoods",
                  concurrency_limit=1, concurrency_id="projection")
    # Opening the tab shows the current choice at once, with the chosen model's budgets;
    # repeated projections hit the memo.
    tab.select(lambda session_value, key, current: budget_selector.for_model(
                   shipped, results, session_value, key, current),
               [session, source, budget], [budget, chart, note], show_progress="hidden",
               api_visibility="private").then(
        project, project_inputs, project_outputs, concurrency_limit=1,
        concurrency_id="projection", api_visibility="private")
    source.change(lambda session_value, key: budget_selector.for_model(
                      shipped, results, session_value, key),
                  [session, source], [budget, chart, note], show_progress="hidden",
                  api_visibility="private")
    # A budget or the centring chosen by the visitor: the same points projected again.
    for control in (budget, centred):
        control.input(project, project_inputs, project_outputs, concurrency_limit=1,
                      concurrency_id="projection", api_visibility="private")
    colour.change(redraw, [view_state, colour, selected], plots, show_progress="hidden",
                  api_visibility="private")
    # .input, not .change: resetting the box after a projection must not redraw twice.
    selected.input(redraw, [view_state, colour, selected], plots, show_progress="hidden",
                   api_visibility="private")
    return NeighbourhoodsTab(source)
