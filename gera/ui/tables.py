"""Result tables for the UI: mean ± std per method and metric, and the featured method − each
other method, paired over seeds (formats and metric list from ``gera.report``)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from gera.methods import featured
from gera.report import difference_heading, fmt_params, metrics_present, pm
from gera.results import CompareResult


def results_table(results: Sequence[CompareResult]) -> pd.DataFrame:
    """One row per (budget, method): each metric as "mean ± std" in percent over the seeds."""
    metrics = metrics_present(results)
    rows = [{"N": r.budget, "method": method, **{m: pm(rec.metrics.get(m)) for m in metrics},
             "chosen on validation": "; ".join(fmt_params(p) for p in rec.chosen)}
            for r in results for method, rec in r.methods.items()]
    return pd.DataFrame(rows)


def differences_table(results: Sequence[CompareResult]) -> pd.DataFrame:
    """The reference − each other method, paired over the same seeds (percentage points)."""
    metrics = metrics_present(results)
    heading = difference_heading(results[0].reference if results else featured())
    rows = [{"N": r.budget, heading: name, **{m: pm(d.get(m), signed=True) for m in metrics}}
            for r in results for name, d in r.paired_differences.items()]
    return pd.DataFrame(rows, columns=["N", heading, *metrics])
