"""The CUDA path end to end: runs where a GPU exists, skipped (with the reason) elsewhere."""
import numpy as np
import pytest
import torch

from gera.geometry import knn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine")


def test_knn_on_the_gpu_matches_the_cpu_graph():
    x = np.random.default_rng(0).normal(size=(3000, 64)).astype(np.float32)
    cpu_idx, cpu_sims = knn(x, 10)
    gpu_idx, gpu_sims = knn(x, 10, device="cuda")
    assert np.allclose(cpu_sims, gpu_sims, atol=1e-4)
    assert (cpu_idx == gpu_idx).mean() > 0.99  # ties may order differently


@pytest.mark.parametrize("precision", ["highest", "medium"])  # medium: TF32 products on CUDA
def test_gera_trains_and_evaluates_on_the_gpu(precision):
    from gera.methods import GeRA
    from gera.settings import TrainConfig
    from test_core import synthetic_world

    pairs, unpaired, (ta, tb, _) = synthetic_world()
    config = TrainConfig(device="cuda", max_steps=60, matmul_precision=precision)
    alignment = GeRA(config, alpha=10.0).fit(pairs, unpaired)
    assert torch.get_float32_matmul_precision() == "highest"
    za, zb = alignment.embed_a(ta), alignment.embed_b(tb)
    assert za.shape == zb.shape and np.isfinite(za).all()
    assert next(alignment.head_a.parameters()).device.type == "cuda"


def test_a_gpu_alignment_travels_to_another_process_on_the_cpu():
    # A worker's result is pickled to the driver: it must not need (or hold) the worker's GPU.
    import pickle

    from gera.methods import Contrastive
    from gera.settings import TrainConfig
    from test_core import synthetic_world

    pairs, unpaired, (ta, _, _) = synthetic_world()
    alignment = Contrastive(TrainConfig(device="cuda", max_steps=20)).fit(pairs, unpaired)
    sent = pickle.loads(pickle.dumps(alignment))
    assert next(sent.head_a.parameters()).device.type == "cpu"
    assert next(alignment.head_a.parameters()).device.type == "cuda"  # the original stays
    assert np.allclose(sent.embed_a(ta), alignment.embed_a(ta), atol=1e-4)


def test_stacked_starts_on_the_gpu_equal_the_fits_one_by_one():
    # What tuning does on CUDA by default (TrainConfig.stack_fits="auto"): the first settings
    # trained as one stacked model, the same alignments as one by one.
    from gera.methods import GeRA
    from gera.settings import TrainConfig
    from test_core import synthetic_world

    pairs, unpaired, (ta, tb, _) = synthetic_world()

    def validate(alignment):
        return float((alignment.embed_a(ta[:80]) * alignment.embed_b(tb[:80])).sum(1).mean())

    fits = {}
    for stack in ("auto", "never"):
        config = TrainConfig(device="cuda", max_steps=120, patience=3, stack_fits=stack)
        fits[stack] = GeRA.fit_together([GeRA(config, alpha=a) for a in (1.0, 10.0, 0.1)],
                                        pairs, unpaired, validate)
    for stacked, single in zip(fits["auto"], fits["never"]):
        assert stacked.best_step == single.best_step and stacked.steps_run == single.steps_run
        assert np.allclose(stacked.embed_a(ta), single.embed_a(ta), atol=1e-4)


@pytest.mark.parametrize("method", ["gera", "structure", "propagation", "contrastive"])
def test_a_fit_on_the_gpu_replays_one_captured_step_and_equals_the_eager_one(method, monkeypatch):
    # stack_fits auto on CUDA: a single fit is a stack of one, its step captured as a CUDA graph
    from gera.methods import method_class
    from gera.settings import TrainConfig
    from test_core import synthetic_world

    captures = []

    class Counted(torch.cuda.CUDAGraph):
        def capture_begin(self, *args, **kwargs):
            captures.append(1)
            return super().capture_begin(*args, **kwargs)

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Counted)
    pairs, unpaired, (ta, tb, _) = synthetic_world()

    def validate(alignment):
        return float((alignment.embed_a(ta[:80]) * alignment.embed_b(tb[:80])).sum(1).mean())

    fits = {stack: method_class(method)(TrainConfig(device="cuda", max_steps=120, patience=3,
                                                    stack_fits=stack)).fit(pairs, unpaired, validate)
            for stack in ("never", "auto")}
    assert captures == [1]
    assert fits["auto"].best_step == fits["never"].best_step
    assert np.allclose(fits["auto"].embed_a(ta), fits["never"].embed_a(ta), atol=1e-4)
    assert [r["step"] for r in fits["auto"].history] == [r["step"] for r in fits["never"].history]
