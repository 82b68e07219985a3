"""The timing scripts' own arithmetic (``scripts/``): what the README's before → after claims rest
on, run on small saved results written here."""
import importlib.util
import json
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sweep(means: dict[str, list[float]], std: float = 0.01) -> list[dict]:
    """A two-budget sweep: each method's top-1 mean at budgets 10 and 100."""
    return [{"budget": budget, "methods": {m: {"metrics": {"zero_shot_top1": {
        "mean": values[i], "std": std}}} for m, values in means.items()}}
        for i, budget in enumerate((10, 100))]


def test_results_agree_counts_equal_and_moved_means_per_method(tmp_path, capsys):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(sweep({"gera": [0.30, 0.50], "cca": [0.20, 0.40]})))
    # gera: one mean equal, one moved by half a std; cca: both moved, one by 3 stds
    after.write_text(json.dumps(sweep({"gera": [0.30, 0.505], "cca": [0.23, 0.4001]})))
    load_script("results_agree").main(str(before), str(after), top=2)
    out = capsys.readouterr().out
    words = " ".join(out.split())  # the columns' padding aside
    assert "4 means in both" in out and "1 equal, 1 move by more than one seed std" in out
    assert "gera 1 of 2 equal, 0 move by more than one std, the largest by 0.50" in words
    assert "cca 0 of 2 equal, 1 move by more than one std, the largest by 3.00" in words
    largest = out.splitlines()[-2].split()  # the top moves, largest first
    assert largest[:4] == ["3.00", "10", "cca", "zero_shot_top1"]


def test_sweep_fit_times_sums_every_seeds_fitting_per_method(tmp_path, capsys):
    fit_s = {"gera": [1.0, 3.0], "contrastive": [0.5, 0.5]}
    runs = [{"budget": b, "wall_s": w,
             "methods": {m: {"fit_s": {"values": v}} for m, v in fit_s.items()}}
            for b, w in ((10, 5.0), (100, 12.0))]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(runs))
    load_script("sweep_fit_times").main([str(path)])
    out = " ".join(capsys.readouterr().out.split())
    assert "10 5.0 2.00 0.50" in out  # per seed: the mean of its values
    assert "process-seconds of fitting: gera 8.0, contrastive 2.0; all 10.0" in out
