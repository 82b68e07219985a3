"""Ray, the optional extra: a sweep on Ray tasks gives the numbers of a run here, and ``embed
--ray`` (Ray Data, encoder actors) writes the cache a local fill writes. One local Ray instance
(2 CPUs) serves the whole module; skipped where ray is not installed."""
from __future__ import annotations

import json
import sys
from functools import partial

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")

from gera.cache import EmbeddingCache  # noqa: E402
from gera.cli import main  # noqa: E402
from gera.data.base import ItemSet  # noqa: E402
from gera.distributed import RayExecutor, embed_with_ray, ray_session  # noqa: E402
from gera.encoders.base import Encoder  # noqa: E402
from gera.ui.config import EXAMPLE_FOLDER  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the module: starting one costs 10-20 s."""
    # The test module is not importable on the workers: its classes travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_session("local", num_cpus=2):
        yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _numbers(path) -> list:
    """A sweep's JSON without what may differ between two identical runs (wall times)."""
    results = json.loads(path.read_text())
    for result in results:
        result.pop("wall_s")
        for method in result["methods"].values():
            method.pop("fit_s")
    return results


TINY_SWEEP = ["sweep", "--task", f"folder:{EXAMPLE_FOLDER}", "--budgets", "8,12", "--seeds", "1",
              "--methods", "gera,contrastive", "--grid-size", "1", "--max-steps", "30"]


def test_a_sweep_on_ray_gives_the_numbers_of_a_run_here(local_ray, tmp_path, capsys):
    """One Ray task per budget × seed (2 × 1), the results equal, to the last bit, those of the
    same sweep run here one seed after another."""
    assert main([*TINY_SWEEP, "--workers", "1", "--json", str(tmp_path / "here.json")]) == 0
    assert main([*TINY_SWEEP, "--ray", "local", "--json", str(tmp_path / "ray.json")]) == 0
    here, on_ray = _numbers(tmp_path / "here.json"), _numbers(tmp_path / "ray.json")
    assert [r["budget"] for r in on_ray] == [8, 12]
    assert on_ray == here
    assert ray.is_initialized()  # --ray local joined the running instance and left it running


def test_a_ray_future_carries_the_task_error(local_ray):
    with RayExecutor() as executor:
        future = executor.submit(int, "not a number")
        with pytest.raises(ValueError, match="not a number") as caught:
            future.result(timeout=60)
    assert type(caught.value) is ValueError  # the task's own error, not Ray's wrapper


class TinyEncoder(Encoder):
    """8-d vectors from a hash of the text: cheap, deterministic, picklable by value."""

    name, modality, dim = "tiny", "text", 8

    def embed(self, items, batch_size=64, progress=None):
        rows = [[(hash_text(t) >> (8 * j)) % 251 / 7.0 for j in range(self.dim)] for t in items]
        return np.asarray(rows, np.float32).reshape(len(rows), self.dim)


def hash_text(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def tiny_items(n: int = 2500) -> ItemSet:
    return ItemSet("text", [f"tiny:{i}" for i in range(n)], lambda idx: [f"text {i}" for i in idx])


def chunk_keys(cache: EmbeddingCache) -> list[list[str]]:
    return sorted(np.load(p)["keys"].tolist() for p in cache.folder(TinyEncoder()).glob("chunk-*.npz"))


def test_embed_on_ray_writes_the_cache_a_local_fill_writes(local_ray, tmp_path):
    items, indices = tiny_items(), np.arange(2500)
    on_ray, here = EmbeddingCache(tmp_path / "ray"), EmbeddingCache(tmp_path / "here")
    for cache in (on_ray, here):  # some already cached: those are not embedded again
        assert cache.fill(TinyEncoder(), items, indices[::7]) == 358
    assert here.fill(TinyEncoder(), items, indices) == 2500 - 358
    assert embed_with_ray(on_ray, TinyEncoder(), items, TinyEncoder, partial(tiny_items, 2500),
                          indices, workers=2) == 2500 - 358
    want = TinyEncoder().embed([f"text {i}" for i in indices])
    for cache in (on_ray, here):
        np.testing.assert_array_equal(cache.embed(TinyEncoder(), items, indices), want)
    assert chunk_keys(on_ray) == chunk_keys(here)  # the same keys in the same chunks
    assert embed_with_ray(on_ray, TinyEncoder(), items, TinyEncoder, partial(tiny_items, 2500),
                          indices) == 0  # all cached: nothing sent to Ray
