"""Tuning's first settings trained as one stacked model (gera.train.train_stacked): the same
alignments as one by one, used only where they can be, and failing as a single run would."""
import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

from gera.errors import GeraError
from gera.methods import GeRA, PseudoPairing, method_class, tune_method
from gera.settings import TrainConfig
from gera.train import can_stack
from test_core import synthetic_world

STARTS = {name: [method_class(name).search_space(60, 64, 48).complete(s)
                 for s in method_class(name).SEARCH.start]
          for name in ("gera", "contrastive", "structure", "propagation")}
FAST = dict(max_steps=100, eval_every=10, patience=3)


@pytest.fixture(scope="module")
def world():
    pairs, unpaired, (ta, tb, _) = synthetic_world(n_unpaired=600)

    def validate(alignment):  # continuous, so float rounding cannot flip a decision
        return float((alignment.embed_a(ta[:80]) * alignment.embed_b(tb[:80])).sum(1).mean())
    return pairs, unpaired, ta, validate


def fitted(name, world, stack, **options):
    pairs, unpaired, _, validate = world
    cls = method_class(name)
    config = TrainConfig(stack_fits=stack, **{**FAST, **options})
    rows = []
    alignments = cls.fit_together([cls.from_settings(config, 0, **p) for p in STARTS[name]],
                                  pairs, unpaired, validate, lambda i, row: rows.append((i, row)))
    return alignments, rows


@pytest.mark.parametrize("name", sorted(STARTS))
def test_stacked_starts_equal_the_fits_one_by_one(name, world):
    ta = world[2]
    single, single_rows = fitted(name, world, "never")
    stacked, stacked_rows = fitted(name, world, "always")
    assert len({tuple(sorted(s.items())) for s in STARTS[name]}) == 3  # three different settings
    gaps = []
    for one, many in zip(single, stacked):
        assert (one.best_step, one.steps_run) == (many.best_step, many.steps_run)
        assert one.diagnostics == many.diagnostics
        assert [r["step"] for r in one.history] == [r["step"] for r in many.history]
        assert np.allclose([r["loss"] for r in one.history], [r["loss"] for r in many.history],
                           rtol=1e-4)
        gaps.append(np.abs(one.embed_a(ta) - many.embed_a(ta)).max())
        assert gaps[-1] < 1e-5
        assert one.logit_scale == pytest.approx(many.logit_scale, rel=1e-5)
    assert sorted(i for i, _ in stacked_rows) == sorted(i for i, _ in single_rows)
    # the settings did differ, by far more than stacking moves a run
    apart = min(np.abs(stacked[i].embed_a(ta) - stacked[j].embed_a(ta)).max()
                for i, j in ((0, 1), (0, 2), (1, 2)))
    assert apart > 20 * max(gaps), (apart, gaps)


def test_a_run_stopped_with_no_score_keeps_its_state_at_the_stop(world):
    # Validation that is NaN for one run all along: it keeps no best state and stops after
    # `patience` checks, while the other goes on; its result is its state at its own stop.
    import math

    pairs, unpaired, ta, score = world
    config = dict(max_steps=100, eval_every=10, patience=2)
    reference = GeRA.fit_together([GeRA(TrainConfig(stack_fits="always", **config), alpha=a)
                                   for a in (1.0, 100.0)], pairs, unpaired, score)
    line = max(row["val"] for row in reference[1].history)

    def validate(alignment):
        value = score(alignment)
        return value if value > line else math.nan

    fits = {stack: GeRA.fit_together([GeRA(TrainConfig(stack_fits=stack, **config), alpha=a)
                                      for a in (1.0, 100.0)], pairs, unpaired, validate)
            for stack in ("never", "always")}
    assert fits["always"][1].steps_run < fits["always"][0].steps_run  # it did stop first
    for one, many in zip(fits["never"], fits["always"]):
        assert (one.best_step, one.steps_run) == (many.best_step, many.steps_run)
        assert np.abs(one.embed_a(ta) - many.embed_a(ta)).max() < 1e-5


def test_fits_one_by_one_end_when_cancelled(world):
    pairs, unpaired, _, validate = world
    config = TrainConfig(max_steps=20)
    fitted = GeRA.fit_together([GeRA(config, alpha=a) for a in (1.0, 10.0, 0.1)], pairs,
                               unpaired, validate, should_stop=lambda: True)
    assert len(fitted) == 1


def test_tuning_with_stacked_starts_makes_the_same_search(world):
    pairs, unpaired, _, validate = world
    tuned = {stack: tune_method("contrastive", TrainConfig(stack_fits=stack, **FAST), 0, pairs,
                                unpaired, validate, 4)
             for stack in ("never", "always")}
    one, many = tuned["never"], tuned["always"]
    assert [t["params"] for t in one.tried] == [t["params"] for t in many.tried]
    assert np.allclose([t["val"] for t in one.tried], [t["val"] for t in many.tried], atol=1e-6)
    assert one.params == many.params


def objectives_and_configs(*methods):
    return [m.objective() for m in methods], [m.config for m in methods]


def test_only_runs_that_sample_alike_stack():
    assert can_stack(*objectives_and_configs(GeRA(alpha=1.0), GeRA(alpha=10.0, weight_decay=0.1)))
    for other in (GeRA(alpha=1.0, geo_batch=32),  # draws other points
                  GeRA(alpha=0.0),  # contrastive-only: no neighbourhoods at all
                  GeRA(alpha=10.0, lr=3e-3),  # one optimiser, one learning rate
                  GeRA(alpha=10.0, max_steps=10)):
        assert not can_stack(*objectives_and_configs(GeRA(alpha=1.0), other)), other
    propagation = method_class("propagation")
    assert can_stack(*objectives_and_configs(propagation(beta=1.0), propagation(beta=3.0)))
    assert not can_stack(*objectives_and_configs(propagation(beta=1.0), propagation(beta=0.0)))
    weighted = GeRA().objective()
    weighted.pair_weights = np.ones(4)  # pseudo-pairs' weights: not compared, never stacked
    assert not can_stack([weighted, GeRA().objective()], [GeRA().config] * 2)


def test_stacking_happens_only_where_asked_and_possible(world, monkeypatch):
    import gera.train

    pairs, unpaired, _, validate = world
    calls = []
    real = gera.train.train_stacked
    monkeypatch.setattr(gera.train, "train_stacked",
                        lambda *a, **k: calls.append(len(a[4])) or real(*a, **k))
    config = TrainConfig(max_steps=20)
    GeRA.fit_together([GeRA(config, alpha=a) for a in (1.0, 10.0)], pairs, unpaired, validate)
    assert calls == []  # auto: on a CPU, one by one
    always = TrainConfig(max_steps=20, stack_fits="always")
    GeRA.fit_together([GeRA(always, alpha=a) for a in (1.0, 10.0)], pairs, unpaired, validate)
    assert calls == [2]
    GeRA.fit_together([GeRA(always, seed=s) for s in (0, 1)], pairs, unpaired, validate)
    PseudoPairing.fit_together([PseudoPairing(always, rounds=0, weight=w) for w in (0.5, 1.0)],
                               pairs, unpaired, validate)
    assert calls == [2]  # other seeds, and pseudo-pairs' several trainings, one by one
    with pytest.raises(GeraError, match="cannot be stacked"):
        real(pairs.a, pairs.b, unpaired.a, unpaired.b, *objectives_and_configs(
            GeRA(always), GeRA(always, geo_batch=8)))


def test_a_diverging_stacked_run_fails_naming_its_settings(world):
    pairs, unpaired, _, validate = world
    config = TrainConfig(stack_fits="always", **FAST)
    with pytest.raises(GeraError, match="alpha=inf"):
        GeRA.fit_together([GeRA(config, alpha=1.0), GeRA(config, alpha=float("inf"))], pairs, unpaired,
                          validate)


def test_stack_fits_is_checked():
    with pytest.raises(GeraError, match="stack_fits"):
        TrainConfig(stack_fits="sometimes")


@pytest.fixture
def fake_cuda_streams(monkeypatch):
    """CUDA's streams faked on the CPU, for CapturedStep's bookkeeping (the real capture and
    replay are tests/test_cuda.py's); a test fakes the graph itself."""
    import torch

    stream = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    return monkeypatch


def one_row_batch(i):
    import torch

    from gera.objectives import Batch

    return Batch(torch.tensor([i]), torch.tensor([i]))


def test_a_captured_step_runs_eagerly_then_replays_each_batch(fake_cuda_streams):
    # Here "capturing" runs the step's Python, as a real capture does.
    import torch

    from gera.train import CapturedStep

    log = []

    class FakeGraph:
        def replay(self):
            log.append(("replay", runner.static.batch.pairs_a.tolist()))

    fake_cuda_streams.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    fake_cuda_streams.setattr(torch.cuda, "graph", lambda g, **options: contextlib.nullcontext())

    def step(batch):
        log.append(("run", batch.pairs_a.tolist()))
        return batch.pairs_a * 10

    runner = CapturedStep(step, warmup=2)
    outputs = [runner(one_row_batch(i)) for i in range(5)]
    assert log == [("run", [0]), ("run", [1]),  # warm-up, eager
                   ("run", [2]), ("replay", [2]),  # captured on batch 2, which is then replayed
                   ("replay", [3]), ("replay", [4])]  # later batches copied in, then replayed
    assert outputs[2] is outputs[3] is outputs[4] is runner.outputs  # the graph's own tensors


def test_a_step_that_cannot_be_captured_runs_eagerly(fake_cuda_streams):
    import torch

    from gera.train import CapturedStep

    @contextlib.contextmanager
    def failing_capture(graph, **options):
        yield
        raise RuntimeError("operation not permitted when stream is capturing")

    fake_cuda_streams.setattr(torch.cuda, "CUDAGraph", lambda: None)
    fake_cuda_streams.setattr(torch.cuda, "graph", failing_capture)
    runner = CapturedStep(lambda batch: batch.pairs_a * 10, warmup=1)
    with pytest.warns(UserWarning, match="runs eagerly"):
        outputs = [runner(one_row_batch(i)).item() for i in range(4)]
    assert outputs == [0, 10, 20, 30] and runner.eager
