"""Plotly figures: training curves, metrics vs budget, UMAP scatters, the kNN-Jaccard histogram."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from gera.figures import COLOURS
from gera.results import CompareResult, Stat

# Above this many points a scatter is drawn with WebGL (Scattergl): SVG gets sluggish there.
WEBGL_ABOVE = 1000
PALETTE = qualitative.D3 + qualitative.Pastel + qualitative.Dark24
METHOD_COLOURS = COLOURS  # the library's figures and the app's charts colour methods alike
SUMMARY_METRICS = ("zero_shot_top1", "zero_shot_top5", "recall@1_a2b", "recall@5_a2b",
                   "recall@1_b2a", "recall@5_b2a", "knn_jaccard_a", "knn_jaccard_b")
_LAYOUT = dict(template="plotly_white", margin=dict(l=40, r=10, t=60, b=40))


def _method_of(label: str) -> str:
    return label.split(" ")[0]


def training_curves(histories: Mapping[str, Sequence[dict]]) -> go.Figure:
    """Validation score and training loss against step, one line per trained run (label →
    history rows ``{"step", "loss", "val", …}``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation score (MRR)", "training loss"))
    for label, rows in histories.items():
        if not rows:
            continue
        colour = METHOD_COLOURS.get(_method_of(label))
        steps = [r["step"] for r in rows]
        if "val" in rows[0]:
            fig.add_trace(go.Scatter(x=steps, y=[r.get("val") for r in rows], name=label,
                                     legendgroup=label, mode="lines", line=dict(color=colour)),
                          row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=[r["loss"] for r in rows], name=label,
                                 legendgroup=label, showlegend="val" not in rows[0], mode="lines",
                                 line=dict(color=colour)), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title="Training curves (first seed)", height=360, **_LAYOUT)
    return fig


def metrics_figure(results: Sequence[CompareResult]) -> go.Figure:
    """One compare result: bars per metric and method (± std over seeds). Several (a sweep):
    the headline metric and neighbourhood preservation against the budget, log scale."""
    if len(results) == 1:
        return _bars(results[0])
    first = next(iter(results[0].methods.values())).metrics
    headline = next(m for m in SUMMARY_METRICS if m in first)
    panels = [m for m in (headline, "knn_jaccard_a") if m in first]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels)
    for col, metric in enumerate(panels, start=1):
        for method in results[0].methods:
            stats = [r.methods[method].metrics[metric] for r in results]
            fig.add_trace(go.Scatter(
                x=[r.budget for r in results], y=[100 * s.mean for s in stats],
                error_y=dict(array=[100 * s.std for s in stats]), name=method,
                legendgroup=method, showlegend=col == 1, mode="lines+markers",
                line=dict(color=METHOD_COLOURS.get(method))), row=1, col=col)
    fig.update_xaxes(type="log", title_text="paired budget N")
    fig.update_yaxes(title_text="%", row=1, col=1)
    fig.update_layout(title="Metrics vs paired budget (mean ± std over seeds)", height=380,
                      **_LAYOUT)
    return fig


def _bars(result: CompareResult) -> go.Figure:
    methods = result.methods
    present = [m for m in SUMMARY_METRICS if any(m in r.metrics for r in methods.values())]
    missing = Stat(np.nan, 0.0, [])
    fig = go.Figure()
    for method, rec in methods.items():
        stats = [rec.metrics.get(m, missing) for m in present]
        fig.add_trace(go.Bar(x=present, y=[100 * s.mean for s in stats], name=method,
                             error_y=dict(array=[100 * s.std for s in stats]),
                             marker_color=METHOD_COLOURS.get(method)))
    fig.update_layout(title=f"Test metrics at N = {result.budget} (mean ± std over seeds)",
                      barmode="group", yaxis_title="%", height=380, xaxis_tickangle=-30,
                      **_LAYOUT)
    return fig


def scatter(coords: np.ndarray, texts: Sequence[str], title: str,
            classes: Optional[Sequence[str]] = None, values: Optional[np.ndarray] = None,
            value_name: str = "", highlight: Optional[dict] = None,
            symbols: Optional[Sequence[str]] = None) -> go.Figure:
    """A 2-D scatter coloured by ``classes`` (one trace per class) or by continuous ``values``.

    ``customdata`` carries each point's position, which the click bridge (theme.JS) sends back
    as the selected point. ``highlight``: ``{"selected": i, "before": [...], "after": [...]}``
    draws the selected point and its neighbours before/after alignment on top.
    """
    trace = go.Scattergl if len(coords) > WEBGL_ABOVE else go.Scatter
    size = 5 if len(coords) > WEBGL_ABOVE else 7
    fig = go.Figure()
    positions = np.arange(len(coords))
    hover = "%{text}<br>point %{customdata}<extra></extra>"
    if values is not None:
        fig.add_trace(trace(x=coords[:, 0], y=coords[:, 1], mode="markers", text=list(texts),
                            customdata=positions, hovertemplate=hover, name=value_name,
                            marker=dict(size=size, color=values, colorscale="Viridis", cmin=0,
                                        cmax=1, colorbar=dict(title=value_name, thickness=12),
                                        symbol=symbols)))
    else:
        groups = classes if classes is not None else ["points"] * len(coords)
        for colour, name in zip(PALETTE * 8, sorted(set(groups))):
            mask = np.array([g == name for g in groups])
            fig.add_trace(trace(x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=name,
                                text=[t for t, m in zip(texts, mask) if m],
                                customdata=positions[mask], hovertemplate=hover,
                                marker=dict(size=size, color=colour, opacity=0.8,
                                            symbol=None if symbols is None else
                                            [s for s, m in zip(symbols, mask) if m])))
    if highlight is not None:
        _add_highlight(fig, coords, texts, highlight)
    fig.update_layout(title=title, height=480, xaxis=dict(visible=False),
                      yaxis=dict(visible=False), template="plotly_white",
                      margin=dict(l=10, r=10, t=50, b=10),
                      # below the points: the right-hand side belongs to the colour bar
                      legend=dict(orientation="h", x=0, y=-0.02, yanchor="top"))
    return fig


def _add_highlight(fig: go.Figure, coords: np.ndarray, texts: Sequence[str], highlight: dict):
    layers = (("before", "kNN before alignment", dict(symbol="circle-open", size=13,
                                                       color="#d62728", line=dict(width=2))),
              ("after", "kNN after alignment", dict(symbol="diamond-open", size=13,
                                                     color="#1f77b4", line=dict(width=2))),
              ("selected", "selected point", dict(symbol="star", size=18, color="black")))
    for key, name, marker in layers:
        idx = np.atleast_1d(np.asarray(highlight[key], dtype=np.int64))
        fig.add_trace(go.Scatter(x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=name,
                                 text=[texts[i] for i in idx], customdata=idx, marker=marker,
                                 hovertemplate="%{text}<br>point %{customdata}<extra>" + name
                                               + "</extra>"))


def jaccard_histogram(jaccard: np.ndarray, k: int) -> go.Figure:
    fig = go.Figure(go.Histogram(x=jaccard, xbins=dict(start=0, end=1.0001, size=1 / (2 * k)),
                                 marker_color="#4c78a8"))
    fig.add_vline(x=float(np.mean(jaccard)), line_dash="dash",
                  annotation_text=f"mean {np.mean(jaccard):.2f}")
    fig.update_layout(title=f"Per-point kNN Jaccard@{k}, original vs aligned",
                      xaxis=dict(title="Jaccard overlap of the k-NN sets", range=[0, 1.02]),
                      yaxis_title="points",
                      height=300, showlegend=False, template="plotly_white",
                      margin=dict(l=40, r=10, t=50, b=40))
    return fig


def budget_figure(curves, selected: Optional[int]) -> go.Figure:
    """A small chart: the headline metric against the paired budget N (log scale), one line per
    method (± std where measured over seeds), the shipped budgets marked and ``selected``
    highlighted. ``curves``: a ``gera.ui.budgets.BudgetCurves`` (None: an empty chart)."""
    fig = go.Figure()
    if curves is None:
        fig.update_layout(title="No shipped budgets for this model", height=280, **_LAYOUT)
        return fig
    for method, points in curves.series.items():
        xs, ys, errs = zip(*sorted(points))
        fig.add_trace(go.Scatter(x=xs, y=ys, error_y=dict(array=errs, thickness=1, width=3),
                                 name=method, mode="lines+markers",
                                 line=dict(color=METHOD_COLOURS.get(method), width=2),
                                 marker=dict(size=6)))
    # The shipped budgets as vertical lines, drawn as traces (data coordinates on a log axis,
    # unlike shapes); the chosen one solid and labelled.
    top = max([m + e for points in curves.series.values() for _, m, e in points] + [1.0]) * 1.08
    for budget in curves.shipped:
        chosen = budget == selected
        fig.add_trace(go.Scatter(
            x=[budget, budget], y=[0, top], mode="lines+text" if chosen else "lines",
            text=["", f"N = {budget}"] if chosen else None,
            # the largest budget is the plot's right edge: label it on the inside
            textposition="bottom left" if budget == max(curves.shipped) else "bottom right",
            textfont=dict(size=11), showlegend=False, hoverinfo="skip",
            line=dict(color="#444" if chosen else "#bbb", width=2 if chosen else 1,
                      dash="solid" if chosen else "dot")))
    fig.update_xaxes(type="log", title_text="paired budget N")
    fig.update_yaxes(title_text=f"{curves.metric_name} (%)", rangemode="tozero")
    fig.update_layout(title=dict(text=f"{curves.task}: {curves.metric_name} vs N",
                                 font=dict(size=14)),
                      height=300, template="plotly_white", margin=dict(l=50, r=10, t=40, b=40),
                      legend=dict(orientation="h", x=0, y=-0.25, yanchor="top",
                                  font=dict(size=10)))
    return fig
