"""Result tables for the UI: mean ± std per method and metric, and GeRA − each baseline."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from gera.cli import TABLE_METRICS


def _pm(stat: dict | None, signed: bool = False) -> str:
    if stat is None:
        return "–"
    return f"{100 * stat['mean']:{'+' if signed else ''}.1f} ± {100 * stat['std']:.1f}"


def _metrics(results: Sequence[dict]) -> list[str]:
    present = {m for r in results for rec in r["methods"].values() for m in rec["metrics"]}
    return [m for m in TABLE_METRICS if m in present]


def results_table(results: Sequence[dict]) -> pd.DataFrame:
    """One row per (budget, method): each metric as "mean ± std" in percent over the seeds."""
    metrics = _metrics(results)
    rows = []
    for result in results:
        for method, rec in result["methods"].items():
            chosen = "; ".join("/".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in params.items()) or "defaults"
                               for params in rec["chosen"])
            rows.append({"N": result["budget"], "method": method,
                         **{m: _pm(rec["metrics"].get(m)) for m in metrics},
                         "chosen on validation": chosen})
    return pd.DataFrame(rows)


def differences_table(results: Sequence[dict]) -> pd.DataFrame:
    """GeRA − each baseline, paired over the same seeds (percentage points)."""
    metrics = _metrics(results)
    rows = [{"N": r["budget"], "GeRA −": name, **{m: _pm(d.get(m), signed=True) for m in metrics}}
            for r in results for name, d in r.get("paired_differences", {}).items()]
    return pd.DataFrame(rows, columns=["N", "GeRA −", *metrics])
