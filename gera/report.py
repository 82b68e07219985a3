"""How results read as text: the metrics tables show, number formats, and the CLI's tables.

The CLI prints these; the app's tables use the same metric list and formats.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from gera.methods import featured_twin, label
from gera.results import AblationResult, CompareResult, Stat

TABLE_METRICS = ("zero_shot_top1", "zero_shot_top5", "recall@1_a2b", "recall@5_a2b",
                 "recall@10_a2b", "recall@1_b2a", "recall@5_b2a", "recall@10_b2a",
                 "knn_jaccard_a", "knn_jaccard_b", "trustworthiness_a", "trustworthiness_b")


def metrics_present(results: Sequence[CompareResult]) -> list[str]:
    """The table metrics any method of any result reports, in table order."""
    present = {m for r in results for rec in r.methods.values() for m in rec.metrics}
    return [m for m in TABLE_METRICS if m in present]


def pm(stat: Optional[Stat], signed: bool = False) -> str:
    """``"12.3 ± 0.4"`` in percent (``"+1.2 ± 0.4"`` for a difference); ``"–"`` when absent."""
    if stat is None:
        return "–"
    return f"{100 * stat.mean:{'+' if signed else ''}.1f} ± {100 * stat.std:.1f}"


def fmt_params(params: dict) -> str:
    """``{"alpha": 10.0, "k": 5}`` → ``"alpha=10/k=5"``; ``{}`` → ``"defaults"``."""
    return "/".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items()) or "defaults"


def difference_heading(reference: str) -> str:
    return f"{label(reference)} −"


def _row(cells) -> str:
    return "  ".join(f"{c:<12}" if i == 0 else f"{c:>13}" for i, c in enumerate(cells))


def format_table(result: CompareResult) -> str:
    """Mean ± std per method and metric, then the reference − each other method (paired)."""
    metrics = metrics_present([result])
    head = (f"{result.task}  budget {result.budget}  seeds {len(result.seeds)}  "
            f"({result.config['encoder_a']} ↔ {result.config['encoder_b']})")
    lines = [head, _row(["method"] + metrics)]
    for name, rec in result.methods.items():
        lines.append(_row([name] + [pm(rec.metrics.get(m)) for m in metrics]))
    if result.paired_differences:
        lines += ["", f"{difference_heading(result.reference)} baseline, paired over the same "
                      "seeds (mean ± std, percentage points):", _row(["vs"] + metrics)]
        for name, d in result.paired_differences.items():
            lines.append(_row([name] + [pm(d.get(m), signed=True) for m in metrics]))
    if result.ceiling is not None:
        c = result.ceiling
        lines += ["", f"supervised ceiling (linear probe, {c['n_labels']} labels): top-1 "
                      f"{100 * c['linear_probe_top1']:.1f}"]
    note = result.config.get("split", {}).get("zero_shot_note")
    if note and any(m.startswith("zero_shot") for m in metrics):
        lines += ["", note]
    lines += ["", "chosen on validation (per seed): " +
              "; ".join(f"{n}: {', '.join(fmt_params(p) for p in r.chosen)}"
                        for n, r in result.methods.items())]
    lines += ["", format_tuning(result)]
    return "\n".join(lines)


def format_search_spaces(n_pairs: int, dim_a: int, dim_b: int) -> str:
    """Every method's tuning search (``gera.tuning``) as a Markdown table: what it tries first
    (the first is its defaults) and the ladders later fits step along."""
    from gera.methods import METHODS, method_class

    lines = [f"Tuning searches for N = {n_pairs} training pairs, d_A = {dim_a}, d_B = {dim_b} "
             f"(`python -m gera report --tuning {n_pairs},{dim_a},{dim_b}`):", "",
             "| method | tried first (the first = defaults) | ladders stepped along by later fits |",
             "|---|---|---|"]
    for name in METHODS:
        space = method_class(name).search_space(n_pairs, dim_a, dim_b)
        start = "; ".join(fmt_params(space.complete(s)) for s in space.start)
        ladders = "; ".join(f"{k} ∈ {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in values)}}}"
                            for k, values in space.ladders.items()) or "–"
        lines.append(f"| {label(name)} | {start} | {ladders} |")
    return "\n".join(lines)


def format_tuning(result: CompareResult) -> str:
    """Per method: fits spent per seed, and how often the choice sat at an edge of the search
    (and on which hyperparameters) — an edge choice means a wider search might do better."""
    parts = []
    for name, rec in result.methods.items():
        fits = sorted(set(rec.fits_run)) or ["?"]
        at_edge = [e for e in rec.edges if e]
        axes = sorted({a for e in at_edge for a in e})
        parts.append(f"{name}: {'/'.join(map(str, fits))} fits, at an edge "
                     f"{len(at_edge)}/{len(rec.edges)}" + (f" ({', '.join(axes)})" if axes else ""))
    return "tuning (fits per seed; choices at an edge of what was searched): " + "; ".join(parts)


def format_ablation(result: AblationResult) -> str:
    """One row per value: the featured method's metrics, and its difference to its twin."""
    first = result.runs[0]
    featured_name, twin = first.reference, featured_twin()
    metrics = [m for m in TABLE_METRICS if m in first.methods[featured_name].metrics]
    lines = [f"{result.task}  budget {result.budget}  seeds {len(first.seeds)}: "
             f"{label(featured_name)} with {result.param} varied (nothing tuned); below each row, "
             f"{label(featured_name)} − {label(twin)}",
             _row([result.param] + metrics)]
    for value, run in zip(result.values, result.runs):
        ours, diff = run.methods[featured_name].metrics, run.paired_differences[twin]
        lines.append(_row([str(value)] + [pm(ours.get(m)) for m in metrics]))
        lines.append(_row([f"  Δ vs {twin}"] + [pm(diff.get(m), signed=True) for m in metrics]))
    coverage = format_coverage(result)
    return "\n".join(lines + ([""] + coverage if coverage else []))


def format_coverage(result: AblationResult) -> list[str]:
    """Did the knob reach the model? Per value, the featured method's kept fit (means over
    seeds): its step, ε per modality, anchors drawn and distinct pool points seen."""
    featured_name = result.runs[0].reference
    rows = []
    for value, run in zip(result.values, result.runs):
        rec = run.methods[featured_name]
        diags = [d for d in rec.diagnostics if d]
        if not diags:
            continue

        def mean(key):
            return float(np.mean([d.get(key, np.nan) for d in diags]))
        rows.append(_row([str(value), f"{np.mean(rec.best_step or [np.nan]):.0f}",
                          f"{mean('eps_a'):.3f} / {mean('eps_b'):.3f}"] +
                         [f"{mean('drawn_' + s):.0f} → {mean('distinct_seen_' + s):.0f}"
                          f" of {mean('pool_' + s):.0f}" for s in "ab"]))
    if not rows:
        return []
    return [f"did it reach the model? {label(featured_name)}'s kept fit, mean over seeds:",
            _row([result.param, "step", "ε A / B", "A: drawn → distinct of pool",
                  "B: drawn → distinct of pool"])] + rows


def format_sweep(results: Sequence[CompareResult], metrics: Sequence[str]) -> str:
    """Metric vs budget: mean ± std per method, and the reference − its twin, paired."""
    methods = list(results[0].methods)
    reference = results[0].reference
    twin = featured_twin() if featured_twin() in results[0].paired_differences else None
    diff_head = f"{label(reference)} − {twin}" if twin else ""
    lines = []
    for metric in metrics:
        lines += [f"{metric} — {results[0].task}, seeds {len(results[0].seeds)}",
                  _row(["budget"] + methods + ([diff_head] if twin else []))]
        for r in results:
            cells = [pm(r.methods[m].metrics.get(metric)) for m in methods]
            if twin:
                cells.append(pm(r.paired_differences.get(twin, {}).get(metric), signed=True))
            lines.append(_row([str(r.budget)] + cells))
        lines.append("")
    return "\n".join(lines).rstrip()
