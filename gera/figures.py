"""Figures of saved results, as plotly figures (no gradio): a budget sweep's curves and an
ablation's curves, mean ± std over seeds. ``python -m gera report --all`` writes them as HTML and
PNG; the About tab draws the same figures from the same JSON, so the app needs neither PNGs nor
an image exporter."""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from gera.methods import METHODS, featured_twin, label
from gera.results import AblationResult, CompareResult, Stat

COLOURS = dict(zip(METHODS, qualitative.Set1))
# The headline: retrieval where the task has a retrieval test, else zero-shot.
HEADLINES = ("recall@1_a2b", "zero_shot_top1")
NEIGHBOURHOODS = "knn_jaccard_a"
WIDTH, HEIGHT = 1200, 540
CAPTION_CHARS = 190  # per caption line at 11 px in WIDTH


def headline(result: CompareResult) -> str:
    present = {m for rec in result.methods.values() for m in rec.metrics}
    return next(m for m in HEADLINES if m in present)


def seeds_text(results: Sequence[CompareResult]) -> str:
    """``"5 seeds"``, or ``"3–5 seeds"`` where the runs differ."""
    counts = sorted({len(r.seeds) for r in results})
    return f"{counts[0]} seed{'s' * (counts[0] != 1)}" if len(counts) == 1 else \
        f"{counts[0]}–{counts[-1]} seeds"


def _line(name: str, xs, stats: Sequence[Stat], show: bool) -> go.Scatter:
    std = [100 * s.std for s in stats]
    return go.Scatter(x=list(xs), y=[100 * s.mean for s in stats], name=label(name),
                      legendgroup=name, showlegend=show, mode="lines+markers",
                      error_y=dict(array=std, thickness=1.2, width=4), customdata=std,
                      line=dict(color=COLOURS.get(name), width=2), marker=dict(size=7),
                      hovertemplate="%{x}: %{y:.1f} ± %{customdata:.1f}<extra>" + label(name)
                                    + "</extra>")


def _finish(fig: go.Figure, title: str, caption: str) -> go.Figure:
    """Title, the caption under it (wrapped: plotly does not wrap), legend below the panels."""
    lines = [line for part in caption.split("<br>") for line in textwrap.wrap(part, CAPTION_CHARS)]
    top = 105 + 15 * len(lines)
    fig.update_layout(title=dict(text=title, subtitle=dict(text="<br>".join(lines),
                                                           font=dict(size=11))),
                      template="plotly_white", width=WIDTH, height=HEIGHT + 15 * len(lines),
                      margin=dict(l=60, r=50, t=top, b=130),
                      legend=dict(orientation="h", x=0, y=-0.3, yanchor="top"))
    fig.update_annotations(font_size=13)  # the panels' titles
    return fig


def sweep_figure(results: Sequence[CompareResult], caption: str) -> go.Figure:
    """Metric against the paired budget N (log axis), one line per method, error bars = std over
    seeds: the headline metric, image-side kNN-Jaccard, and the reference method minus each other
    method on the headline, paired seed by seed."""
    results = sorted(results, key=lambda r: r.budget)
    metric, reference = headline(results[0]), results[0].reference
    panels = [metric] + ([NEIGHBOURHOODS] if NEIGHBOURHOODS in
                         results[0].methods[reference].metrics else [])
    fig = make_subplots(rows=1, cols=len(panels) + 1, horizontal_spacing=0.07, subplot_titles=[
        f"{m} (%)" for m in panels] + [f"{label(reference)} − each method, {metric} (paired)"])
    budgets = [r.budget for r in results]
    for col, m in enumerate(panels, start=1):
        for name in results[0].methods:
            fig.add_trace(_line(name, budgets, [r.methods[name].metrics[m] for r in results],
                                show=col == 1), row=1, col=col)
    for name in results[0].paired_differences:
        fig.add_trace(_line(name, budgets, [r.paired_differences[name][metric] for r in results],
                            show=False), row=1, col=len(panels) + 1)
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"), row=1, col=len(panels) + 1)
    fig.update_xaxes(type="log", title_text="paired budget N", tickvals=budgets)
    return _finish(fig, f"{results[0].task}: test metrics against the paired budget N — mean ± "
                        f"std over {seeds_text(results)}", caption)


def ablation_figure(result: AblationResult, caption: str) -> go.Figure:
    """The featured method and its twin against the varied setting (one category per value),
    error bars = std over seeds: the headline metric and image-side kNN-Jaccard. For a pool
    size, each value's label also says how many distinct pool points the anchors reached."""
    runs, reference, twin = result.runs, result.runs[0].reference, featured_twin()
    metric = headline(runs[0])
    panels = [metric] + ([NEIGHBOURHOODS] if NEIGHBOURHOODS in
                         runs[0].methods[reference].metrics else [])
    ticks = [_tick(result.param, v, r.methods[reference].diagnostics)
             for v, r in zip(result.values, runs)]
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08,
                        subplot_titles=[f"{m} (%)" for m in panels])
    for col, m in enumerate(panels, start=1):
        # side by side within each value (offsetgroup), so one method's error bars do not hide
        # the other's; grouping would also pull the axis down to 0, as for bars: range set here
        traces = [_line(name, ticks, [r.methods[name].metrics[m] for r in runs], show=col == 1)
                  .update(offsetgroup=name) for name in (reference, twin)]
        fig.add_traces(traces, rows=1, cols=col)
        fig.update_yaxes(range=_span(traces), row=1, col=col)
    fig.update_layout(scattermode="group", scattergap=0.75)
    fig.update_xaxes(type="category", title_text=result.param)
    notes = [_eps_note(runs, reference)]
    if any("<br>" in t for t in ticks):
        notes.append(f"under each {result.param}: the distinct points of pairs ∪ pool that "
                     f"{label(reference)}'s anchors reached, of all of them (mean over seeds)")
    return _finish(fig, f"{result.task}, N = {result.budget}: {label(reference)} with "
                        f"{result.param} varied, against {label(twin)} — mean ± std over "
                        f"{seeds_text(runs)}", "<br>".join([caption] + [n for n in notes if n]))


def _span(traces) -> list[float]:
    """The y range of these traces' error bars, with a margin."""
    low = min(y - e for t in traces for y, e in zip(t.y, t.error_y.array))
    high = max(y + e for t in traces for y, e in zip(t.y, t.error_y.array))
    pad = 0.06 * (high - low or 1.0)
    return [low - pad, high + pad]


def _tick(param: str, value, diagnostics: Sequence[dict]) -> str:
    """The value; for a pool size also the distinct pool points anchors reached (mean over
    seeds), since a pool the geometric term never samples cannot matter."""
    side = param[-1] if param.startswith("unpaired_") else None
    seen = [d[f"distinct_seen_{side}"] for d in diagnostics if d and side and
            f"distinct_seen_{side}" in d]
    if not seen:
        return str(value)
    pool = np.mean([d[f"pool_{side}"] for d in diagnostics if d and f"pool_{side}" in d])
    return f"{value}<br>{np.mean(seen):.0f} of {pool:.0f} seen"


def _eps_note(runs: Sequence[CompareResult], reference: str) -> Optional[str]:
    """ε per modality (mean over seeds) of the kept fits, and whether it stayed fixed."""
    eps = []
    for run in runs:
        diags = [d for d in run.methods[reference].diagnostics if d and "eps_a" in d]
        if diags:
            eps.append(tuple(round(float(np.mean([d[f"eps_{s}"] for d in diags])), 3)
                             for s in "ab"))
    if not eps:
        return None
    if len(set(eps)) == 1:
        return f"heat-kernel ε fixed for every value: A {eps[0][0]:.3f} / B {eps[0][1]:.3f}"
    return "heat-kernel ε per value (A / B): " + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in eps)


def save(fig: go.Figure, stem: Path) -> tuple[list[Path], Optional[str]]:
    """``stem``.html (plotly.js from its CDN, which keeps the file small) and ``stem``.png.
    The PNG needs kaleido and a Chromium (requirements-dev.txt, packages-dev.txt): without them
    the HTML is still written and the reason comes back instead of the PNG."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs="cdn")
    png = stem.with_suffix(".png")
    # kaleido's browser driver logs a traceback for a browser message it skips (Debian's
    # Chromium sends some); the image is fine, so that noise is kept out of the report.
    driver = logging.getLogger("choreographer")
    level = driver.level
    driver.setLevel(logging.CRITICAL)
    try:
        fig.write_image(png, width=fig.layout.width, height=fig.layout.height, scale=1)
    except Exception as err:  # kaleido missing, or no browser for it: the HTML stands alone
        return [html], f"PNG not written ({type(err).__name__}: {str(err).splitlines()[0]})"
    finally:
        driver.setLevel(level)
    return [html, png], None
