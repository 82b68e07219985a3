"""A snapshot (``python -m gera snapshot``) reruns a comparison with no encoder or data: the same
numbers from float32 rows, rounded rows under a cache key of their own, clear refusals."""
import json

import numpy as np
import pytest

from gera.cache import EmbeddingCache
from gera.cli import main
from gera.data import get_task, parse_public_task_options
from gera.embedded import EmbeddedTask
from gera.errors import GeraError
from gera.experiment import compare
from gera.settings import CompareSettings, TrainConfig

OPTIONS = {"n_test": 200}
SETTINGS = CompareSettings(task="fashion-mnist", task_options=OPTIONS, budget=30, seeds=(0, 1),
                           methods=("gera", "procrustes", "auto"), unpaired_a=300, grid_size=2,
                           train=TrainConfig(max_steps=20))
SNAPSHOT_ARGS = ["--task", "fashion-mnist", "--task-option", "n_test=200", "--unpaired-a", "300",
                 "--seeds", "2", "--budgets", "10,30"]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snapshots")
    for dtype in ("float32", "float16"):
        assert main(["snapshot", *SNAPSHOT_ARGS, "--dtype", dtype,
                     "--out", str(folder / f"{dtype}.npz")]) == 0
    return folder


def _values(result):
    return {(name, metric): stat.values for name, method in result.methods.items()
            for metric, stat in method.metrics.items()}


def test_a_float32_snapshot_gives_the_same_numbers(snapshots, tmp_path):
    here = compare(SETTINGS)
    task = f"snapshot:{snapshots / 'float32.npz'}"
    # An empty cache: the rows come from the snapshot, not from the cache the task filled.
    there = compare(CompareSettings(**{**SETTINGS.__dict__, "task": task, "task_options": {}}),
                    cache=EmbeddingCache(tmp_path / "cache"))
    assert _values(here) == _values(there)
    assert {n: m.chosen for n, m in here.methods.items()} == \
        {n: m.chosen for n, m in there.methods.items()}
    assert there.config["encoder_a"] == here.config["encoder_a"]
    assert there.config["split"]["snapshot_dtype"] == "float32"  # the result says where it came from
    assert there.config["split"]["snapshot"] == "float32.npz" and "snapshot" not in here.config["split"]
    assert here.ceiling == there.ceiling


def test_a_float16_snapshot_is_smaller_and_keeps_its_rows_apart(snapshots):
    exact = get_task(f"snapshot:{snapshots / 'float32.npz'}")
    rounded = get_task(f"snapshot:{snapshots / 'float16.npz'}")
    assert (snapshots / "float16.npz").stat().st_size < 0.75 * (snapshots / "float32.npz").stat().st_size
    enc_exact, enc_rounded = exact.own_encoders(None, None)[0], rounded.own_encoders(None, None)[0]
    assert enc_exact.name == enc_rounded.name and enc_exact.cache_key != enc_rounded.cache_key
    split = rounded.split(30, 1, 300, None)
    assert split.info["snapshot_dtype"] == "float16"
    rows = [EmbeddedTask.open(f"snapshot:{snapshots / f'{d}.npz'}") for d in ("float32", "float16")]
    for data in rows:
        data.ensure(split.unpaired_a, split.unpaired_b)
    a32, a16 = rows[0].a(split.unpaired_a), rows[1].a(split.unpaired_a)
    assert not np.array_equal(a32, a16) and np.allclose(a32, a16, rtol=2e-3, atol=2e-3)


def test_a_snapshot_refuses_what_it_does_not_hold(snapshots, tmp_path):
    name = f"snapshot:{snapshots / 'float32.npz'}"
    task = get_task(name)
    with pytest.raises(GeraError, match=r"no split for budget 100, seed 0.*\[10, 0, 300, null, 0.2\]"):
        task.split(100, 0, 300, None)
    with pytest.raises(GeraError, match="was embedded with"):
        EmbeddedTask.open(name, encoder_a="efficientnet_lite0")
    assert EmbeddedTask.open(name, encoder_b=" minilm").encoder_b.name == "minilm"
    with pytest.raises(GeraError, match="takes no options"):
        get_task(name, n_test=5)
    data = EmbeddedTask.open(name)
    with pytest.raises(GeraError, match="holds no image row for item"):
        data.encoder_a.embed([10 ** 6])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(GeraError, match="not a readable GeRA snapshot"):
        get_task(f"snapshot:{bad}")
    whole = (snapshots / "float16.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[:len(whole) // 2])  # a copy broken off
    with pytest.raises(GeraError, match="not a readable GeRA snapshot"):
        get_task(f"snapshot:{tmp_path / 'cut.npz'}")
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(json.dumps({"format": "x"}).encode(), np.uint8))
    with pytest.raises(GeraError, match="not a GeRA snapshot"):
        get_task(f"snapshot:{tmp_path / 'other.npz'}")


def test_a_snapshot_is_not_a_task_a_visitor_can_pick(snapshots):
    with pytest.raises(GeraError, match="Unknown task"):
        parse_public_task_options(f"snapshot:{snapshots / 'float32.npz'}", "")
