"""End to end: real bundled encoders, real data (small subsets), the CLI and its JSON."""
import json

import numpy as np
import pytest

from gera.cache import EmbeddingCache
from gera.cli import main
from gera.experiment import compare
from gera.methods import DEFAULT_METHODS, featured, method_class
from gera.results import CompareResult
from gera.settings import CompareSettings, TrainConfig

SMALL_FASHION = ["--task", "fashion-mnist", "--task-option", "n_test=200", "--unpaired-a", "300",
                 "--budget", "30", "--seeds", "2", "--grid-size", "1", "--max-steps", "40"]




@pytest.mark.slow
def test_compare_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["compare", *SMALL_FASHION, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "GeRA − baseline" in table and "zero_shot_top1" in table
    result = json.loads(out.read_text())
    assert result["task"] == "fashion-mnist" and result["budget"] == 30
    assert set(result["methods"]) == set(DEFAULT_METHODS)
    assert result["config"]["seeds"] == [0, 1]
    for name, rec in result["methods"].items():
        top1 = rec["metrics"]["zero_shot_top1"]
        assert len(top1["values"]) == 2 and 0.0 <= top1["mean"] <= 1.0
        assert top1["mean"] > 0.2, f"{name} is at chance on fashion-mnist (0.10)"
        for key in ("zero_shot_top5", "knn_jaccard_a", "knn_jaccard_b", "trustworthiness_a",
                    "trustworthiness_b"):
            assert key in rec["metrics"]
    assert result["reference"] == featured() == "gera"
    gera = np.array(result["methods"]["gera"]["metrics"]["zero_shot_top1"]["values"])
    for name in DEFAULT_METHODS[1:]:
        other = np.array(result["methods"][name]["metrics"]["zero_shot_top1"]["values"])
        diff = result["paired_differences"][name]["zero_shot_top1"]["values"]
        assert np.allclose(diff, gera - other)
    assert 0.3 < result["ceiling"]["linear_probe_top1"] <= 1.0
    # saved results print again, and a list of them (a sweep) as metric × budget tables
    assert main(["report", str(out)]) == 0
    assert CompareResult.from_json(result).to_json() == result  # the JSON round-trips exactly
    (tmp_path / "sweep.json").write_text(json.dumps([result, {**result, "budget": 60}]))
    assert main(["report", str(tmp_path / "sweep.json"), "--metrics", "zero_shot_top1"]) == 0
    sweep_table = capsys.readouterr().out
    assert "zero_shot_top1 — fashion-mnist" in sweep_table and "\n60 " in sweep_table


@pytest.mark.slow
def test_compare_emoji_reports_retrieval_and_held_out_zero_shot():
    settings = CompareSettings(task="emoji", task_options={"n_test_pairs": 100}, budget=30,
                               seeds=(0,), methods=("gera", "asif"), unpaired_a=150,
                               unpaired_b=300, grid_size=1, train=TrainConfig(max_steps=30))
    result = compare(settings)
    metrics = result.methods["gera"].metrics
    for key in ("recall@1_a2b", "recall@10_b2a", "zero_shot_top1", "knn_jaccard_b"):
        assert key in metrics
    assert result.config["validation"] == "retrieval"
    # 100 candidates: chance R@10 is 0.10
    assert metrics["recall@10_a2b"].mean > 0.1
    # the first seed's fitted alignments ride along, with the trained one's history on it
    assert set(result.alignments) == {"gera", "asif"}
    assert result.alignments["gera"].history and not result.alignments["asif"].history


@pytest.mark.slow
def test_second_compare_embeds_nothing(monkeypatch):
    from gera.encoders import get_encoder

    settings = CompareSettings(task="fashion-mnist", task_options={"n_test": 200}, budget=30,
                               seeds=(0,), methods=("procrustes",), unpaired_a=300, grid_size=1)
    compare(settings)  # fills whatever the first test did not

    def no_more_embedding(*args, **kwargs):
        raise AssertionError("a cached item was embedded again")

    for name, modality in (("mobilenet_v2", "image"), ("minilm", "text")):
        monkeypatch.setattr(get_encoder(name, modality), "embed", no_more_embedding)
    result = compare(settings)
    assert result.methods["procrustes"].metrics["zero_shot_top1"].mean > 0.2


@pytest.mark.parametrize("args, message", [
    (["--task", "no-such-task"], "Unknown task"),
    (["--budget", "100000"], "out of range"),
    (["--methods", "gera,magic"], "Unknown method"),
    (["--encoder-a", "resnet9000"], "resnet9000"),
    (["--task-option", "n_test"], "KEY=VALUE"),
])
def test_cli_bad_input_is_one_clear_message(args, message, capsys):
    assert main(["compare", "--seeds", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_train_command_writes_loadable_checkpoints(tmp_path):
    from gera.checkpoint import load_alignment

    assert main(["train", *SMALL_FASHION, "--methods", "gera,asif", "--out", str(tmp_path)]) == 0
    alignment, meta = load_alignment(tmp_path / "fashion-mnist-N30-gera")
    assert meta["method"] == "gera" and meta["encoder_a"] == "mobilenet_v2"
    assert alignment.embed_a(np.ones((1, 1280), np.float32)).shape == (1, 256)
    assert (tmp_path / "fashion-mnist-N30-asif.safetensors").is_file()


@pytest.mark.slow
def test_a_tiny_budget_runs_every_method_without_tuning():
    # Budget 4: 3 training pairs, 1 validation pair — too few to tune or stop early on.
    settings = CompareSettings(task="fashion-mnist", task_options={"n_test": 200}, budget=4,
                               seeds=(0, 0, 1), unpaired_a=300, train=TrainConfig(max_steps=20))
    result = compare(settings)
    assert result.seeds == [0, 1]  # a repeated seed is run once
    assert result.config["validation"].startswith("none")
    for name, rec in result.methods.items():
        if method_class(name).selects:  # nothing to choose by: the featured method
            assert [c["method"] for c in rec.chosen] == [featured()] * 2
            continue
        assert rec.chosen == [result.config["search"][name]["start"][0]] * 2
        assert len(rec.metrics["zero_shot_top1"].values) == 2
        if method_class(name).trained:  # nothing to stop on: every step runs, the last is kept
            assert rec.best_step == [20, 20]


@pytest.mark.slow
def test_ablate_varies_one_setting_against_the_twin(tmp_path, capsys):
    out = tmp_path / "ablation.json"
    assert main(["ablate", *SMALL_FASHION, "--param", "alpha", "--values", "0,5",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "alpha" in table and "Δ vs contrastive" in table
    ablation = json.loads(out.read_text())
    assert [run["value"] for run in ablation["runs"]] == [0, 5]
    zero, five = ablation["runs"]
    assert set(zero["methods"]) == {"gera", "contrastive"} and zero["config"]["fits_per_method"] == 0
    # α = 0 is exactly contrastive-only: the same pairs, batches and heads give the same model
    assert zero["paired_differences"]["contrastive"]["zero_shot_top1"]["values"] == [0.0, 0.0]
    assert five["config"]["train"]["alpha"] == 5
    assert five["methods"]["gera"]["metrics"] != zero["methods"]["gera"]["metrics"]
    assert main(["report", str(out)]) == 0


@pytest.mark.slow
def test_sweep_writes_one_result_per_budget(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    args = [a for a in SMALL_FASHION if a not in ("--budget", "30")]
    assert main(["sweep", *args, "--budgets", "10,20", "--methods", "gera,procrustes",
                 "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [r["budget"] for r in results] == [10, 20]
    assert all(set(r["methods"]) == {"gera", "procrustes"} for r in results)


@pytest.mark.slow
def test_bench_prints_the_training_cost_ratio(capsys):
    from gera.ui.config import EXAMPLE_FOLDER

    assert main(["bench", "--task", f"folder:{EXAMPLE_FOLDER}", "--budget", "10", "--repeats", "1",
                 "--skip-encoders"]) == 0
    out = capsys.readouterr().out
    for precision in ("highest", "medium"):  # both measured in the one run, each with its ratio
        section = out.split(f"matmul precision {precision}")[1]
        ratio = float(section.split("GeRA / contrastive: step ")[1].split("×")[0])  # featured / twin
        assert ratio > 1.0, "a GeRA step does more work than a contrastive one"
    assert "matmul precision medium against matmul precision highest: per step gera" in out


@pytest.mark.slow
def test_seeds_in_worker_processes_give_the_same_results():
    # Workers fit one (seed, method) each and ``auto`` chooses here among a seed's fits that came
    # back from different processes: the same numbers as one process doing it all.
    from gera.executors import seed_executor

    settings = CompareSettings(task="fashion-mnist", task_options={"n_test": 200}, budget=30,
                               seeds=(0, 1), methods=("gera", "procrustes", "auto"), unpaired_a=200,
                               grid_size=2, train=TrainConfig(max_steps=20))
    here = compare(settings)
    with seed_executor(2) as pool:
        there = compare(settings, executor=pool)
    for name in settings.methods:
        for metric, stat in here.methods[name].metrics.items():
            assert np.allclose(stat.values, there.methods[name].metrics[metric].values,
                               rtol=0, atol=1e-6), (name, metric)
        assert here.methods[name].chosen == there.methods[name].chosen
    assert set(there.alignments) == set(settings.methods)  # the first seed's, as here
    assert here.ceiling == there.ceiling


def test_trustworthiness_matches_sklearn():
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    from gera.evaluate import trustworthiness
    from gera.geometry import l2_normalize

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 40)).astype(np.float32) + 3 * rng.normal(size=(12, 40))[
        rng.integers(0, 12, 300)].astype(np.float32)
    aligned = l2_normalize(x[:, :8] + 0.5 * rng.normal(size=(300, 8)))
    expected = sklearn_trustworthiness(l2_normalize(x), aligned, n_neighbors=10, metric="cosine")
    assert trustworthiness(x, aligned, 10) == pytest.approx(expected, abs=1e-9)


def test_pool_ablation_nests_pools_fixes_eps_and_covers_the_pool():
    from dataclasses import replace

    from gera.embedded import EmbeddedTask, split_items
    from gera.experiment import POOL_COVERAGE, _fixed_eps, _split, pool_settings

    base = CompareSettings(task="fashion-mnist", task_options={"n_test": 100}, budget=30,
                           seeds=(0,), methods=("gera",), grid_size=0,
                           train=TrainConfig(max_steps=20))
    sizes = [0, 40, 160]
    runs = pool_settings(base, "a", sizes)
    data = EmbeddedTask.open("fashion-mnist", {"n_test": 100})
    splits = [_split(data, s, seed=0) for s in runs]
    assert [len(s.unpaired_a) for s in splits] == sizes
    for small, large in zip(splits, splits[1:]):  # nested, and the text pool never moves
        assert np.array_equal(small.unpaired_a, large.unpaired_a[:len(small.unpaired_a)])
        assert np.array_equal(small.unpaired_b, large.unpaired_b)
        assert np.array_equal(small.train_pairs, large.train_pairs)
    for s in runs:  # long enough that anchors drawn ≥ 3 × the largest pool, for both methods
        assert not s.train.early_stopping
        assert s.train.max_steps * s.train.geo_batch >= POOL_COVERAGE * max(sizes)
    eps = []
    for s, split in zip(runs, splits):
        data.ensure(*split_items(split))
        fixed = _fixed_eps(s, data, seed=0).train
        eps.append((fixed.eps_a, fixed.eps_b))
    assert len(set(eps)) == 1 and min(eps[0]) > 0  # one ε for every pool size

    small, large = (compare(s).methods["gera"].diagnostics[0] for s in runs[1:])
    assert small["eps_a"] == large["eps_a"] == eps[0][0]
    # the knob reached the model: the larger pool's anchors reach beyond the smaller pool
    assert small["distinct_seen_a"] <= small["pool_a"] < large["distinct_seen_a"]
