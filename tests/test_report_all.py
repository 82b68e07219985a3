"""``python -m gera report --all``: the registry of named experiments, what is run and what is
skipped, the figures drawn from saved results, and the About tab with and without them. Fast:
experiments are stood in for by copying the repository's own saved results."""
import json
import shutil
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import pytest

from gera.data import get_task

from gera import cli, figures, results_set
from gera.results import AblationResult, result_from_json
from gera.ui import about

RESULTS = Path(__file__).resolve().parents[1] / "results"
SWEEP, POOL, ALPHA = "emoji-sweep", "fashion-mnist-100-pool", "emoji-300-alpha"


def saved(name):
    return json.loads((RESULTS / f"{name}.json").read_text())


def test_registry_names_are_unique_and_every_entry_parses_with_5_seeds_or_more():
    names = [e.name for e in results_set.EXPERIMENTS]
    assert len(names) == len(set(names))
    for experiment in results_set.EXPERIMENTS:
        args = experiment.parsed()  # the real parser: a bad flag exits here
        assert args.command == experiment.kind in ("compare", "sweep", "ablate")
        assert len(args.seeds) >= 5, experiment.name
        assert experiment.command.endswith(f"--json results/{experiment.name}.json")


def test_registry_has_a_budget_curve_per_task_and_pool_and_alpha_curves():
    sweeps = {e.parsed().task: e.parsed().budgets for e in results_set.EXPERIMENTS
              if e.kind == "sweep"}
    assert sweeps["fashion-mnist"] == sweeps["emoji"] == [10, 30, 100, 300, 1000, 3000]
    # speech reaches the largest budget the task serves (the README's speech curve)
    assert sweeps["spoken-words"][-1] == get_task("spoken-words").max_budget()
    ablations = {(e.parsed().task, e.parsed().param) for e in results_set.EXPERIMENTS
                 if e.kind == "ablate"}
    for task in ("fashion-mnist", "emoji"):
        assert {(task, "pool"), (task, "alpha")} <= ablations


def test_out_of_date_names_what_differs_from_todays_command():
    experiment = results_set.select([SWEEP])[0]
    assert results_set.out_of_date(experiment, None) == ["missing"]
    payload = saved(SWEEP)
    problems = results_set.out_of_date(experiment, payload)
    if len(payload[0]["config"]["seeds"]) < 5:  # the 3-seed sweep saved before the registry
        assert f"{len(payload[0]['config']['seeds'])} seeds, not 5" in problems
    # a current result is current; a different α or seed list is not
    alpha = results_set.select([ALPHA])[0]
    assert results_set.out_of_date(alpha, saved(ALPHA)) == []
    pool = results_set.select([POOL])[0]
    assert results_set.out_of_date(pool, saved(POOL)) == []
    changed = saved(POOL)
    for run in changed["runs"]:
        run["config"]["train"]["alpha"] = 1.0
        run["config"]["seeds"] = [0, 1, 2]
    assert set(results_set.out_of_date(pool, changed)) == {"3 seeds, not 5", "alpha 1.0, not 10.0"}


@pytest.fixture
def no_png(monkeypatch):
    """PNG export stood in for by the failure a machine without kaleido has: fast, and the
    fallback (HTML only, the reason said) is what is tested."""
    def refuse(*args, **kwargs):
        raise ValueError("Image export requires the kaleido package")
    monkeypatch.setattr(go.Figure, "write_image", refuse)


@pytest.fixture
def fake_runner(monkeypatch):
    """Each run 'makes' its result by copying the repository's saved one; records who ran."""
    ran = []

    def run(experiment, folder):
        ran.append(experiment.name)
        shutil.copy(RESULTS / f"{experiment.name}.json", folder / f"{experiment.name}.json")
        (folder / f"{experiment.name}.txt").write_text("table\n")
    monkeypatch.setattr(results_set, "run_cli", run)
    return ran


def test_report_all_runs_what_is_missing_skips_what_is_there_and_draws(tmp_path, fake_runner,
                                                                        no_png, capsys):
    shutil.copy(RESULTS / f"{ALPHA}.json", tmp_path)  # present and current: skipped
    code = cli.main(["report", "--all", "--only", f"{ALPHA},{POOL}", "--results", str(tmp_path)])
    assert code == 0 and fake_runner == [POOL]
    for name in (ALPHA, POOL):
        html = (tmp_path / "figures" / f"{name}.html").read_text()
        assert "cdn.plot.ly" in html  # plotly.js from its CDN: a small file
    assert not list((tmp_path / "figures").glob("*.png"))
    out, err = capsys.readouterr()
    assert "PNG not written" in err
    record = (tmp_path / "report-all.txt").read_text()
    assert record == out
    rows = {line.split()[0]: line.split()[1] for line in record.splitlines()[3:] if line.strip()
            and not line.startswith(("this", "the "))}
    assert rows[POOL] == "ran" and rows[ALPHA] == "current" and rows[SWEEP] == "missing"
    assert "the whole set:" in record

    fake_runner.clear()
    assert cli.main(["report", "--all", "--only", f"{ALPHA},{POOL}", "--results",
                     str(tmp_path)]) == 0
    assert fake_runner == []  # resumable: nothing left to run
    assert cli.main(["report", "--all", "--only", ALPHA, "--force", "--results",
                     str(tmp_path)]) == 0
    assert fake_runner == [ALPHA]


def test_a_failed_experiment_is_reported_and_the_others_still_run(tmp_path, monkeypatch, no_png,
                                                                  capsys):
    ran = []

    def run(experiment, folder):
        ran.append(experiment.name)
        if experiment.name == POOL:
            raise results_set.GeraError("the command exited with status 2")
        shutil.copy(RESULTS / f"{experiment.name}.json", folder)
    monkeypatch.setattr(results_set, "run_cli", run)
    code = cli.main(["report", "--all", "--only", f"{POOL},{ALPHA}", "--results", str(tmp_path)])
    assert code == 2 and ran == [POOL, ALPHA]
    assert "failed: fashion-mnist-100-pool" in capsys.readouterr().err
    assert (tmp_path / "figures" / f"{ALPHA}.html").is_file()


def test_figures_only_runs_nothing(tmp_path, fake_runner, no_png):
    assert cli.main(["report", "--all", "--only", POOL, "--figures-only", "--results",
                     str(tmp_path)]) == 0
    assert fake_runner == [] and not (tmp_path / "figures" / f"{POOL}.html").exists()


def test_unknown_experiment_is_refused(tmp_path, capsys):
    assert cli.main(["report", "--all", "--only", "nope", "--results", str(tmp_path)]) == 2
    assert "No experiment named nope" in capsys.readouterr().err


def _panel_traces(fig, col):
    axis = "x" if col == 1 else f"x{col}"
    return [t for t in fig.data if t.xaxis == axis]


def test_sweep_figure_has_a_line_per_method_with_error_bars():
    results = result_from_json(saved(SWEEP))
    fig = figures.sweep_figure(results, "data: the command")
    methods = list(results[0].methods)
    first = _panel_traces(fig, 1)
    assert [t.legendgroup for t in first] == methods
    budgets = sorted(r.budget for r in results)
    for trace in first:
        assert list(trace.x) == budgets and len(trace.error_y.array) == len(budgets)
        assert all(e >= 0 for e in trace.error_y.array)
    assert fig.layout.xaxis.type == "log"
    assert f"{len(results[0].seeds)} seeds" in fig.layout.title.text
    assert "data: the command" in fig.layout.title.subtitle.text
    # the paired-difference panel: the reference minus every other method
    assert len(_panel_traces(fig, 3)) == len(methods) - 1


def test_pool_figure_says_what_the_anchors_reached_and_the_fixed_eps():
    result = result_from_json(saved(POOL))
    assert isinstance(result, AblationResult)
    fig = figures.ablation_figure(result, "data: the command")
    first = _panel_traces(fig, 1)
    assert [t.legendgroup for t in first] == ["gera", "contrastive"]
    assert all(len(t.error_y.array) == len(result.values) for t in first)
    assert all("seen" in x for x in first[0].x)
    assert "ε fixed" in fig.layout.title.subtitle.text


def test_png_export_works_where_kaleido_is_installed(tmp_path):
    pytest.importorskip("kaleido")
    fig = results_set.figure(results_set.select([ALPHA])[0], RESULTS)
    paths, problem = figures.save(fig, tmp_path / ALPHA)
    assert problem is None, problem
    assert (tmp_path / f"{ALPHA}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_about_tab_builds_without_results_and_says_how_to_make_them(tmp_path):
    with gr.Blocks():
        about.build(tmp_path, [])
    note = about.figure_or_note(results_set.select([SWEEP])[0], tmp_path)
    assert "not yet generated" in note and f"report --all --only {SWEEP}" in note
    broken = tmp_path / f"{POOL}.json"
    broken.write_text(json.dumps({"runs": [{"value": 0}], "param": "pool"}))
    assert "cannot be drawn" in about.figure_or_note(results_set.select([POOL])[0], tmp_path)


def test_about_tab_draws_the_saved_results_with_the_library_figure():
    with gr.Blocks() as demo:
        about.build(RESULTS, [])
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.Plot)]
    drawn = {e.name for e in results_set.EXPERIMENTS if (RESULTS / f"{e.name}.json").is_file()
             and results_set.has_figure(e)}
    assert {p.label for p in plots} == drawn and POOL in drawn


@pytest.mark.slow  # two real processes of the CLI, one of which embeds 30 images
def test_run_cli_writes_the_table_and_json_as_the_cli_does_and_keeps_nothing_on_failure(tmp_path):
    from gera.ui.config import EXAMPLE_FOLDER

    task = ("--task", f"folder:{EXAMPLE_FOLDER}", "--seeds", "2", "--methods", "procrustes",
            "--fits", "1", "--workers", "1")
    results_set.run_cli(results_set.Experiment("tiny", ("compare", "--budget", "10") + task),
                        tmp_path)
    table = (tmp_path / "tiny.txt").read_text()
    assert table.startswith(f"folder:{EXAMPLE_FOLDER}  budget 10  seeds 2") and "wall time" in table
    assert result_from_json(json.loads((tmp_path / "tiny.json").read_text())).budget == 10
    with pytest.raises(results_set.GeraError, match="exited with status 2"):
        results_set.run_cli(results_set.Experiment("huge", ("compare", "--budget", "5000") + task),
                            tmp_path)
    assert not (tmp_path / "huge.txt").exists() and not list(tmp_path.glob(".tmp-*"))


def test_about_tab_says_when_a_table_is_from_an_earlier_command(tmp_path):
    payload = saved(ALPHA)
    for run in payload["runs"]:
        run["config"]["seeds"] = [0, 1, 2]
    (tmp_path / f"{ALPHA}.json").write_text(json.dumps(payload))
    (tmp_path / f"{ALPHA}.txt").write_text("the table\n")
    text = about.measured_results(tmp_path, tmp_path / "reproduce-results.sh")
    assert f"`{results_set.select([ALPHA])[0].command}` — saved by an earlier command " \
           "(3 seeds, not 5)" in text


def test_a_sweeps_recorded_time_is_its_longest_run():
    # compare_many runs a sweep's budgets together, each timed from the start: adding them up
    # would count the same minutes several times.
    runs = [{"wall_s": 100.0}, {"wall_s": 250.0}, {"wall_s": 240.0}]
    assert results_set.recorded_wall_s(runs) == 250.0
    assert results_set.recorded_wall_s({"runs": runs}) == 250.0
    assert results_set.recorded_wall_s([{"wall_s": None}]) is None
