"""Tuning at equal cost: the search spends exactly its budget, steps beyond edges, flags them."""
import math

import pytest

from gera.errors import GeraError
from gera.tuning import SearchSpace, tune

SPACE = SearchSpace({"alpha": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), "size": (8, 16, 32)},
                    ({"alpha": 1.0, "size": 16}, {"alpha": 10.0}, {"alpha": 0.1}))


def run(score, fits, space=SPACE):
    calls = []

    def fit(params):
        calls.append(params)
        return f"model{len(calls)}", score(params)
    return tune(space, fits, fit), calls


def test_the_search_spends_exactly_its_budget_and_keeps_the_best():
    best, calls = run(lambda p: -abs(math.log10(p["alpha"]) - 0.5) - abs(p["size"] - 16) / 100, 6)
    assert len(calls) == 6 == len(best.tried)
    assert len({tuple(sorted(c.items())) for c in calls}) == 6  # never the same setting twice
    assert calls[:3] == [{"alpha": 1.0, "size": 16}, {"alpha": 10.0, "size": 16},
                         {"alpha": 0.1, "size": 16}]
    assert best.params == {"alpha": 3.0, "size": 16} and best.alignment == f"model{calls.index(best.params) + 1}"
    assert best.edges == []


def test_a_best_value_on_the_edge_gets_a_step_beyond_it():
    best, calls = run(lambda p: p["alpha"], 4)  # more is always better
    assert calls[3] == {"alpha": 30.0, "size": 16}
    assert best.params["alpha"] == 30.0 and "alpha" in best.edges


def test_the_ladder_end_is_flagged_when_the_budget_cannot_leave_it():
    best, calls = run(lambda p: p["alpha"] + p["size"], 20)
    assert best.params == {"alpha": 100.0, "size": 32}
    assert set(best.edges) == {"alpha", "size"}
    assert len(calls) == len({tuple(sorted(c.items())) for c in calls})


def test_one_fit_is_the_defaults_and_nan_validation_stops_the_search():
    best, calls = run(lambda p: 1.0, 1)
    assert calls == [{"alpha": 1.0, "size": 16}] and best.edges == []
    best, calls = run(lambda p: math.nan, 6)
    assert len(calls) == 1


def run_with_fit_many(score, fits):
    batches, calls = [], []

    def fit(params):
        calls.append(params)
        return f"model{len(calls)}", score(params)

    def fit_many(settings):
        batches.append(list(settings))
        return [fit(p) for p in settings]
    return tune(SPACE, fits, fit, fit_many=fit_many), calls, batches


@pytest.mark.parametrize("fits", [2, 3, 6])
def test_the_start_settings_fitted_at_once_make_the_same_search(fits):
    score = lambda p: -abs(math.log10(p["alpha"]) - 0.5) - abs(p["size"] - 16) / 100
    alone, alone_calls = run(score, fits)
    together, calls, batches = run_with_fit_many(score, fits)
    assert batches == [alone_calls[:min(fits, 3)]]  # the starts, in one call
    assert calls == alone_calls and together.params == alone.params
    assert together.tried == alone.tried and together.alignment == alone.alignment


def test_a_nan_score_among_the_starts_ends_the_search_there():
    together, calls, batches = run_with_fit_many(lambda p: math.nan, 6)
    assert len(batches[0]) == 3 and len(together.tried) == 1  # as one by one: the first only
    _, _, batches = run_with_fit_many(lambda p: 1.0, 1)
    assert batches == []  # a single fit goes through fit


def test_the_search_ends_early_when_the_space_is_exhausted():
    tiny = SearchSpace({"dim": (4, 8)}, ({"dim": 8},))
    best, calls = run(lambda p: p["dim"], 6, tiny)
    assert [c["dim"] for c in calls] == [8, 4] and best.params == {"dim": 8}


def test_a_start_setting_off_its_ladder_is_refused():
    with pytest.raises(GeraError, match="not on its ladder"):
        SearchSpace({"alpha": (1.0, 10.0)}, ({"alpha": 3.0},))


def test_auto_keeps_the_candidate_validation_prefers_and_says_which():
    import numpy as np

    from gera.methods import Auto, Pairs, Unpaired

    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8)).astype(np.float32)
    pairs, unpaired = Pairs(a[:30], a[:30] @ rng.normal(size=(8, 6)).astype(np.float32)), \
        Unpaired(a[30:], np.zeros((0, 6), np.float32))
    # a validation score only the second candidate can win
    chosen = Auto(fits=2, candidates=("procrustes", "cca")).fit(
        pairs, unpaired, validate=lambda al: float(al.method == "cca"))
    assert chosen.method == chosen.diagnostics["chosen_method"] == "cca"
    assert chosen.diagnostics["chosen_params"] == {"reg": 0.1, "dim": 128}  # ties: the first
    assert Auto.choose({"x": math.nan, "y": 0.1, "z": 0.1}) == "y"
    with pytest.raises(GeraError, match="candidates"):
        Auto(candidates=("auto",))


def test_the_readme_tuning_table_is_the_codes():
    from pathlib import Path

    from gera.report import format_search_spaces

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert format_search_spaces(80, 1280, 384) in readme, \
        "regenerate it: python -m gera report --tuning 80,1280,384"
