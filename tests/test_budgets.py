"""Shipped checkpoints at several budgets: float16 storage, the listing by task and budget, the
budget a visitor may ask for, the results a budget chart reads, and the modality centring."""
import json

import numpy as np
import pytest
from test_core import synthetic_world

from gera.checkpoint import checkpoint_stem, load_alignment, save_alignment
from gera.errors import GeraError
from gera.geometry import centre_modalities, l2_normalize, modality_gap
from gera.methods import ASIF, CCA, GeRA, Procrustes
from gera.results import comparisons_by_budget
from gera.settings import TrainConfig


def top_k(alignment, queries, gallery, k, a_to_b=True):
    q = alignment.embed_a(queries) if a_to_b else alignment.embed_b(queries)
    g = alignment.embed_b(gallery) if a_to_b else alignment.embed_a(gallery)
    return np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]


def test_float16_checkpoints_are_half_the_size_and_retrieve_the_same(tmp_path):
    pairs, unpaired, (ta, tb, _) = synthetic_world(n_pairs=120)
    fitted = [GeRA(TrainConfig(max_steps=40, head="mlp")).fit(pairs, unpaired),
              Procrustes().fit(pairs, unpaired), CCA().fit(pairs, unpaired),
              ASIF().fit(pairs, unpaired)]
    for i, alignment in enumerate(fitted):
        full, _ = save_alignment(alignment, tmp_path / f"full{i}", {"budget": 120})
        half, _ = save_alignment(alignment, tmp_path / f"half{i}", {"budget": 120}, float16=True)
        assert half.stat().st_size < 0.6 * full.stat().st_size
        loaded, meta = load_alignment(tmp_path / f"half{i}")
        assert meta == {"budget": 120}
        # vectors stay float32, matrices are float16; loading gives float32 outputs
        za = loaded.embed_a(ta)
        assert za.dtype == np.float32 and np.allclose(za, alignment.embed_a(ta), atol=5e-3)
        for a_to_b, (queries, gallery) in ((True, (ta, tb)), (False, (tb, ta))):
            ref, got = (top_k(x, queries, gallery, 10, a_to_b) for x in (alignment, loaded))
            assert np.mean(ref[:, 0] == got[:, 0]) >= 0.98, type(alignment).__name__
            overlap = np.mean([len(set(r) & set(g)) / 10 for r, g in zip(ref, got)])
            assert overlap >= 0.97, type(alignment).__name__


def test_checkpoint_stems_name_the_budget():
    assert checkpoint_stem("emoji", 300) == "emoji-N300"
    assert checkpoint_stem("emoji") == "emoji"
    assert checkpoint_stem("folder:/data/my pairs", 30) == "folder-my_pairs-N30"


@pytest.fixture(scope="module")
def shipped_folder(tmp_path_factory):
    """Procrustes and ASIF checkpoints of the emoji task at two budgets, one of them under the
    old name (no budget in the stem): both are read from their meta."""
    folder = tmp_path_factory.mktemp("checkpoints")
    pairs, unpaired, _ = synthetic_world()
    for budget, stem in ((30, "emoji-N30"), (300, "emoji")):
        for method, alignment in (("procrustes", Procrustes().fit(pairs, unpaired)),
                                  ("asif", ASIF().fit(pairs, unpaired))):
            if budget == 300 and method == "asif":
                continue  # a budget shipped without one method
            save_alignment(alignment, folder / f"{stem}-{method}",
                           {"task": "emoji", "budget": budget, "method": method, "seed": 0,
                            "metrics": {"recall@1_b2a": budget / 1000}}, float16=True)
    (folder / "emoji-N30-broken.json").write_text("{not json")
    return folder


def test_shipped_checkpoints_are_listed_by_task_and_budget(shipped_folder):
    from gera.ui.models import ShippedModels, read_checkpoints

    groups = read_checkpoints(shipped_folder)
    assert [(g.task_name, g.budget, list(g.alignments)) for g in groups] == [
        ("emoji", 30, ["procrustes", "asif"]), ("emoji", 300, ["procrustes"])]
    shipped = ShippedModels(shipped_folder, limit=40)
    assert shipped.choices("image") == [("emoji · shipped checkpoints", "shipped:emoji")]
    assert shipped.choices("speech") == []
    assert shipped.budgets("shipped:emoji") == [30, 300]
    assert shipped.default_budget("shipped:emoji") == 300
    assert shipped.budgets("shipped:nothing") == []


@pytest.mark.parametrize("asked, got", [(None, 300), ("", 300), (30, 30), ("30", 30),
                                        (" 300 ", 300), (300.0, 300)])
def test_a_shipped_budget_is_accepted(shipped_folder, asked, got):
    from gera.ui.models import ShippedModels

    assert ShippedModels(shipped_folder, limit=40).budget_of("shipped:emoji", asked) == got


@pytest.mark.parametrize("asked", [100, "1000", "3e2", "-30", "30; rm -rf /", 10**30, True,
                                   "../../etc", 30.5])
def test_a_budget_that_is_not_shipped_is_refused_by_name(shipped_folder, asked):
    from gera.ui.models import ShippedModels

    shipped = ShippedModels(shipped_folder, limit=40)
    with pytest.raises(GeraError, match="No shipped emoji checkpoints at N = .*: the budgets "
                                        "shipped for emoji are 30, 300"):
        shipped.get("shipped:emoji", asked)
    with pytest.raises(GeraError, match="No shipped checkpoints called"):
        shipped.get("shipped:../emoji", 30)


def test_the_budget_chart_reads_sweeps_then_compares_and_falls_back_to_checkpoints(
        shipped_folder, tmp_path):
    from gera.ui.budgets import budget_curves
    from gera.ui.models import ShippedModels

    def compare(budget, r1, precision="highest"):
        stat = {"mean": r1, "std": 0.01, "values": [r1 - 0.01, r1 + 0.01]}
        record = {"metrics": {"recall@1_b2a": stat, "zero_shot_top1": stat}, "chosen": [{}, {}],
                  "val_score": stat, "best_step": [], "fit_s": stat}
        return {"task": "emoji", "budget": budget, "wall_s": 1.0,
                "config": {"seeds": [0, 1], "train": {"matmul_precision": precision}},
                "methods": {"gera": record, "asif": record}}

    shipped = ShippedModels(shipped_folder, limit=40)
    curves = budget_curves(shipped, "shipped:emoji", tmp_path)  # no results: the checkpoints'
    assert "shipped checkpoints' own test metrics" in curves.source
    assert curves.series["procrustes"] == [(30, 3.0, 0.0), (300, 30.0, 0.0)]
    (tmp_path / "emoji-sweep.json").write_text(json.dumps([compare(30, 0.1), compare(100, 0.2)]))
    (tmp_path / "emoji-100.json").write_text(json.dumps(compare(100, 0.9)))  # the sweep has 100
    (tmp_path / "emoji-300.json").write_text(json.dumps(compare(300, 0.3)))
    (tmp_path / "emoji-300-alpha.json").write_text(json.dumps(
        {"task": "emoji", "budget": 300, "param": "alpha", "values": [1], "runs": []}))
    (tmp_path / "junk.json").write_text("[{]")
    # a timing run at reduced precision (sorts first by name) only fills budgets nothing else has
    (tmp_path / "emoji-sweep-medium.json").write_text(json.dumps(
        [compare(30, 0.5, "medium"), compare(1000, 0.4, "medium")]))
    results, files = comparisons_by_budget(tmp_path, "emoji")
    assert [r.budget for r in results] == [30, 100, 300, 1000]
    assert files == ["emoji-sweep.json", "emoji-300.json", "emoji-sweep-medium.json"]
    assert results[0].methods["gera"].metrics["recall@1_b2a"].mean == 0.1
    (tmp_path / "emoji-sweep-medium.json").unlink()
    curves = budget_curves(shipped, "shipped:emoji", tmp_path)
    assert curves.metric == "recall@1_b2a" and curves.shipped == [30, 300]
    assert [(n, round(m)) for n, m, _ in curves.series["gera"]] == [(30, 10), (100, 20), (300, 30)]
    assert "results/emoji-sweep.json" in curves.source


def test_centring_each_modality_closes_the_gap_and_brings_partners_together():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(200, 16))
    # two cones: each modality's points = a common offset of its own + the shared content
    za = l2_normalize(shared + 6 * np.eye(16)[0] + 0.1 * rng.normal(size=(200, 16)))
    zb = l2_normalize(shared + 6 * np.eye(16)[1] + 0.1 * rng.normal(size=(200, 16)))
    ca, cb = centre_modalities(za, zb)
    assert modality_gap(za, zb) > 1.0 and modality_gap(ca, cb) < 0.1
    assert np.allclose(np.linalg.norm(ca, axis=1), 1) and np.allclose(np.linalg.norm(cb, axis=1), 1)
    assert np.allclose(ca, l2_normalize(za - za.mean(0)), atol=1e-6)

    def partner_is_nearest(a, b):  # over both modalities together: is i's nearest point i's partner?
        joint = np.concatenate([a, b])
        sims = joint @ joint.T
        np.fill_diagonal(sims, -np.inf)
        return np.mean(sims[:200].argmax(1) == np.arange(200) + 200)

    assert partner_is_nearest(za, zb) < 0.1 and partner_is_nearest(ca, cb) > 0.9
