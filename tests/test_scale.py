"""Large pools: the approximate kNN graph (IVF-Flat above a size threshold) finds nearly all of
the exact neighbours, the same ones for the same seed; the scale benchmark runs."""
from __future__ import annotations

import numpy as np
import pytest

import gera.geometry as geometry
import gera.scale as scale
from gera.cli import main
from gera.geometry import approximate_knn, knn
from gera.scale import clustered_unit_vectors, recall_at_k


def test_the_approximate_graph_is_nearly_exact_and_the_same_for_a_seed():
    x = clustered_unit_vectors(6000, 64, seed=3)
    exact, exact_sims = knn(x, 20, exact=True)
    approx, sims = approximate_knn(x, 20, seed=1)
    assert approx.shape == sims.shape == (6000, 20)
    assert not (approx == np.arange(6000)[:, None]).any()  # self excluded
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # nearest first
    hits = np.mean([len(np.intersect1d(a, e)) for a, e in zip(approx, exact)]) / 20
    assert hits > 0.95, hits
    assert recall_at_k(x, approx, np.arange(0, 6000, 10)) > 0.95
    again, again_sims = approximate_knn(x, 20, seed=1)
    np.testing.assert_array_equal(again, approx)
    np.testing.assert_array_equal(again_sims, sims)


def test_knn_turns_approximate_above_the_threshold(monkeypatch):
    x = clustered_unit_vectors(3000, 32)
    calls = []
    monkeypatch.setattr(geometry, "approximate_knn",
                        lambda *a, **kw: calls.append(len(a[0])) or approximate_knn(*a, **kw))
    knn(x, 5)
    assert calls == []  # 3,000 ≤ 50,000: exact
    monkeypatch.setattr(geometry, "APPROX_THRESHOLD", 2000)
    idx, _ = knn(x, 5)
    assert calls == [3000] and idx.shape == (3000, 5)
    knn(x, 5, exact=True)
    assert calls == [3000]


@pytest.mark.slow  # ~30 s: two small training jobs
def test_bench_scale_prints_recall_and_step_times(monkeypatch, capsys):
    monkeypatch.setattr(geometry, "APPROX_THRESHOLD", 2000)
    monkeypatch.setattr(scale, "APPROX_THRESHOLD", 2000)
    assert main(["bench", "--scale", "--scale-sizes", "1500,4000", "--scale-dim", "32",
                 "--scale-steps", "20"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("1,500", "4,000"))]
    assert [r[1] for r in rows] == ["exact", "approx"]
    assert float(rows[1][4]) > 0.9  # recall@50
