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


def test_gera_trains_and_evaluates_on_the_gpu():
    from gera.methods import GeRA
    from gera.settings import TrainConfig
    from test_core import synthetic_world

    pairs, unpaired, (ta, tb, _) = synthetic_world()
    alignment = GeRA(TrainConfig(device="cuda", max_steps=60), alpha=10.0).fit(pairs, unpaired)
    za, zb = alignment.embed_a(ta), alignment.embed_b(tb)
    assert za.shape == zb.shape and np.isfinite(za).all()
    assert next(alignment.head_a.parameters()).device.type == "cuda"
