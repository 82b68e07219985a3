"""Every measured result the README and the About tab show, by name: ``results/NAME.txt`` (the
table the command prints) and ``results/NAME.json`` (its ``--json``), the ``python -m gera``
arguments that make them, and ``python -m gera report --all``, which runs what is missing or
out of date and draws the figures.

A registry of named experiments in the style of open_clip's named model configs: a result
joins the docs by adding one line to ``EXPERIMENTS``; nothing else knows the list.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

from gera.errors import GeraError
from gera.io import atomic_write
from gera.settings import TrainConfig


@dataclass(frozen=True)
class Experiment:
    """One result: ``python -m gera ARGS --json results/NAME.json > results/NAME.txt``."""

    name: str
    args: tuple[str, ...]

    @property
    def command(self) -> str:
        return f"python -m gera {' '.join(self.args)} --json results/{self.name}.json"

    @property
    def kind(self) -> str:
        """compare | sweep | ablate"""
        return self.args[0]

    def parsed(self):
        """The arguments as the real CLI parses them (seeds, budgets, methods, …)."""
        from gera.cli import build_parser

        return build_parser().parse_args([*self.args, "--json", f"{self.name}.json"])


def _experiments(*entries: tuple[str, str]) -> tuple[Experiment, ...]:
    return tuple(Experiment(name, tuple(args.split())) for name, args in entries)


# Seeds are the CLI's default (5) everywhere; tests/test_report_all.py holds every entry to ≥ 5.
EXPERIMENTS = _experiments(
    ("fashion-mnist-100", "compare --task fashion-mnist --budget 100"),
    ("fashion-mnist-100-structure",
     "compare --task fashion-mnist --budget 100 --methods gera,contrastive,structure"),
    ("fashion-mnist-100-pseudo",
     "compare --task fashion-mnist --budget 100 --methods pseudo,contrastive --fits 1"),
    ("fashion-mnist-100-propagation",
     "compare --task fashion-mnist --budget 100 --methods propagation,contrastive,gera --fits 1"),
    ("fashion-mnist-100-pool", "ablate --task fashion-mnist --budget 100 --param pool "
                               "--values 0,100,1000,5000 --alpha 10"),
    ("fashion-mnist-100-alpha",
     "ablate --task fashion-mnist --budget 100 --param alpha --values 0.1,1,10,100"),
    ("fashion-mnist-sweep", "sweep --task fashion-mnist --budgets 10,30,100,300,1000,3000"),
    ("emoji-300", "compare --task emoji --budget 300 --fits 3 "
                  "--methods gera,contrastive,procrustes,asif,cca"),
    ("emoji-300-fits6", "compare --task emoji --budget 300"),
    ("emoji-300-alpha", "ablate --task emoji --budget 300 --param alpha --values 0.1,1,10,100"),
    ("emoji-300-pool",
     "ablate --task emoji --budget 300 --param pool --values 0,100,1000,3000 --alpha 10"),
    ("emoji-300-unpaired-b",
     "ablate --task emoji --budget 300 --param unpaired_b --values 300,1500,6000"),
    ("emoji-300-unpaired-a",
     "ablate --task emoji --budget 300 --param unpaired_a --values 300,1000,3000"),
    ("emoji-sweep", "sweep --task emoji --budgets 10,30,100,300,1000,3000"),
    ("spoken-words-sweep", "sweep --task spoken-words --budgets 30,100,300,1000,3382"),
    # What was tried on the speech misses (README, "Speech ↔ text"), each against the sweep's
    # row at the same budget and seeds: the text side by meaning (minilm), more hash bins for
    # the phonetic one, and InfoNCE with every clip of a transcript a positive (from N = 1000 a
    # text is said by 4 voices, so the batches hold repeats).
    ("spoken-words-300-minilm",
     "compare --task spoken-words --budget 300 --encoder-b minilm --methods gera,contrastive,cca"),
    ("spoken-words-1000-phonetic2048", "compare --task spoken-words --budget 1000 "
                                       "--encoder-b phonetic:2048 --methods contrastive,cca"),
    ("spoken-words-1000-multi-positive",
     "compare --task spoken-words --budget 1000 --methods gera,contrastive --multi-positive true"),
)
# A sweep's compact tables (``results/NAME-summary.txt``): these metrics, where the task has them.
SUMMARY_METRICS = ("recall@1_a2b", "recall@10_a2b", "zero_shot_top1", "knn_jaccard_a")


def select(names: Optional[Sequence[str]] = None) -> list[Experiment]:
    """The named experiments in registry order (all of them for None); unknown names refused."""
    if not names:
        return list(EXPERIMENTS)
    known = {e.name for e in EXPERIMENTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GeraError(f"No experiment named {', '.join(unknown)}. Known: "
                        f"{', '.join(sorted(known))}.")
    return [e for e in EXPERIMENTS if e.name in names]


def load(experiment: Experiment, folder: Path):
    """The experiment's saved JSON (None where there is none, or it cannot be read)."""
    try:
        return json.loads((Path(folder) / f"{experiment.name}.json").read_text())
    except (OSError, ValueError):
        return None


def out_of_date(experiment: Experiment, payload) -> list[str]:
    """How a saved result differs from what the experiment's command makes today (empty: it is
    that command's result): task, seeds, budgets or values, methods, tuning fits, and any
    training option the command sets."""
    if payload is None:
        return ["missing"]
    args, unreadable = experiment.parsed(), ["not a result of compare, sweep or ablate"]
    if experiment.kind == "ablate":
        from gera.cli import _parse_value  # how the CLI reads --values
        from gera.experiment import POOL_ALIASES

        if not isinstance(payload, dict):
            return unreadable
        runs = payload.get("runs", [])
        problems = _differ("param", payload.get("param"), POOL_ALIASES.get(args.param, args.param))
        problems += _differ("values", [r.get("value") for r in runs],
                            [_parse_value(v) for v in args.values.split(",")])
        methods, budgets = None, [args.budget]
    else:
        runs = payload if isinstance(payload, list) else [payload]
        budgets = args.budgets if experiment.kind == "sweep" else [args.budget]
        methods, problems = [m for m in args.methods.split(",") if m], []
    try:
        problems += _differ("budgets", sorted({r["budget"] for r in runs}), sorted(budgets))
        if runs:  # every run of a sweep or an ablation shares these
            problems += _run_differs(runs[0], args, methods, experiment.kind == "ablate")
    except (KeyError, TypeError, AttributeError):
        return unreadable
    return problems


def _run_differs(run: dict, args, methods, ablation: bool) -> list[str]:
    config = run["config"]
    problems = _differ("task", run["task"], args.task) + \
        _differ("seeds", list(config["seeds"]), list(args.seeds))
    if not ablation:  # an ablation fixes its own methods and tuning (none)
        problems += _differ("methods", sorted(config["methods"]), sorted(methods))
        problems += _differ("fits", config.get("fits_per_method", config.get("grid_size")),
                            args.grid_size)
    for f in fields(TrainConfig):
        asked = getattr(args, f.name, None)
        if asked is not None:
            problems += _differ(f.name, config["train"].get(f.name), asked)
    return problems


def _differ(what: str, saved, asked) -> list[str]:
    if _same(saved, asked):
        return []
    if what == "seeds" and isinstance(saved, list):
        return [f"{len(saved)} seeds, not {len(asked)}"]
    if what == "methods":
        lacks = ", ".join(sorted(set(asked) - set(saved)))
        extra = ", ".join(sorted(set(saved) - set(asked)))
        return ["methods: " + "; ".join(p for p in (lacks and f"lacks {lacks}",
                                                      extra and f"has {extra}") if p)]
    return [f"{what} {_brief(saved)}, not {_brief(asked)}"]


def _same(saved, asked) -> bool:
    """Equal, with numbers compared as numbers (JSON writes 10 for the 10.0 asked)."""
    if isinstance(saved, list) and isinstance(asked, list):
        return len(saved) == len(asked) and all(map(_same, saved, asked))
    numbers = (int, float)
    if isinstance(saved, numbers) and isinstance(asked, numbers):
        return abs(float(saved) - float(asked)) <= 1e-9 * max(1.0, abs(float(asked)))
    return saved == asked


def _brief(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def recorded_wall_s(payload) -> Optional[float]:
    """The wall time a saved result records. A sweep's or an ablation's runs go to the workers
    together (``compare_many``), each timed from the start, so the longest is the whole."""
    if isinstance(payload, list):
        runs = payload
    elif isinstance(payload, dict):
        runs = payload.get("runs", [payload])
    else:
        return None
    walls = [r.get("wall_s") for r in runs if isinstance(r, dict)]
    return float(max(walls)) if walls and None not in walls else None


def run_cli(experiment: Experiment, folder: Path) -> None:
    """The experiment's command in a process of its own, exactly as the CLI runs it: the table
    on stdout into NAME.txt (replaced only when the command succeeds), the JSON by its
    ``--json``; progress on this terminal's stderr."""
    folder = Path(folder)
    argv = [sys.executable, "-m", __package__, *experiment.args,
            "--json", str(folder / f"{experiment.name}.json")]

    # The package this process runs, wherever the command was started from.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}

    def write(file):
        code = subprocess.run(argv, stdout=file, env=env).returncode
        if code:
            raise GeraError(f"{experiment.name}: the command exited with status {code} (its "
                            "messages are above)")
    atomic_write(folder / f"{experiment.name}.txt", write)


@dataclass
class Outcome:
    """What ``report --all`` did with one experiment."""

    name: str
    status: str  # ran | failed | current | missing | out of date
    wall_s: Optional[float]  # measured now (ran, failed), else as the JSON records it
    note: str = ""


def run_all(folder: Path, names: Optional[Sequence[str]] = None, force: bool = False,
            run: bool = True, runner: Optional[Callable[[Experiment, Path], None]] = None,
            log: Callable[[str], None] = print) -> list[Outcome]:
    """Run each named experiment (all for None) whose JSON is missing or out of date (every one
    with ``force``; none without ``run``), one after another; a failure is reported and the rest
    still run. ``runner`` (default ``run_cli``) makes one experiment's files. Returns an outcome
    for EVERY experiment of the registry, so the record of a partial run shows the whole set."""
    chosen = {e.name for e in select(names)}
    runner = runner or run_cli
    outcomes = []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for experiment in EXPERIMENTS:
        payload = load(experiment, folder)
        problems = out_of_date(experiment, payload)
        if not run or experiment.name not in chosen or (not force and not problems):
            status = "current" if not problems else "missing" if payload is None else "out of date"
            outcomes.append(Outcome(experiment.name, status,
                                    None if payload is None else recorded_wall_s(payload),
                                    "; ".join(p for p in problems if p != "missing")))
            continue
        log(f"[{experiment.name}] {experiment.command}" +
            (f"  (saved result: {'; '.join(problems)})" if problems else ""))
        start = time.perf_counter()
        try:
            runner(experiment, Path(folder))
        except (GeraError, OSError) as err:
            outcomes.append(Outcome(experiment.name, "failed", time.perf_counter() - start,
                                    str(err)))
            log(f"[{experiment.name}] failed: {err}")
            continue
        outcomes.append(Outcome(experiment.name, "ran", time.perf_counter() - start))
        log(f"[{experiment.name}] done in {outcomes[-1].wall_s:.0f} s")
    return outcomes


def format_outcomes(outcomes: Sequence[Outcome], total_s: float, command: str) -> str:
    """The record report --all prints and saves: per experiment its status and wall time, and
    the whole set's."""
    lines = [command, "", f"{'experiment':<32}{'status':<13}{'wall s':>8}  note"]
    for o in outcomes:
        wall = "–" if o.wall_s is None else f"{o.wall_s:.0f}"
        note = ("(recorded in its JSON) " if o.status not in ("ran", "failed") and o.wall_s
                else "") + o.note
        lines.append(f"{o.name:<32}{o.status:<13}{wall:>8}  {note}".rstrip())
    ran = [o.wall_s for o in outcomes if o.status == "ran"]
    done = [o for o in outcomes if o.status in ("ran", "current")]
    to_do = [o.name for o in outcomes if o not in done]
    known = sum(o.wall_s or 0.0 for o in done)
    lines += ["", f"this command: {len(ran)} experiment(s) run, {sum(ran):.0f} s; "
                  f"{total_s:.0f} s in all (figures included)",
              f"the whole set: {len(done)} of {len(outcomes)} experiments current, "
              f"{known:.0f} s ({known / 3600:.1f} h) as run now or as their JSON records (a JSON "
              f"records the comparison's own time, not process start-up)" +
              (f"; still to run: {', '.join(to_do)}" if to_do else "")]
    return "\n".join(lines)


# --- what the results look like: sweep summaries and figures ----------------------------------

def _sweep(experiment: Experiment, folder: Path):
    """A sweep's saved results and the summary metrics its task has (None: no sweep saved)."""
    from gera.results import CompareResult

    payload = load(experiment, folder)
    if experiment.kind != "sweep" or not isinstance(payload, list) or not payload:
        return None
    results = [CompareResult.from_json(r) for r in payload]
    present = {m for r in results for rec in r.methods.values() for m in rec.metrics}
    return results, [m for m in SUMMARY_METRICS if m in present]


def summary_command(experiment: Experiment, folder: Path) -> Optional[str]:
    sweep = _sweep(experiment, folder)
    return None if sweep is None else (f"python -m gera report results/{experiment.name}.json "
                                       f"--metrics {','.join(sweep[1])}")


def write_summary(experiment: Experiment, folder: Path) -> Optional[Path]:
    """A sweep's compact tables, metric × budget (``results/NAME-summary.txt``), exactly what
    ``summary_command`` prints; None for an experiment that is not a sweep or has no JSON."""
    from gera.report import format_sweep

    sweep = _sweep(experiment, folder)
    if sweep is None:
        return None
    path = Path(folder) / f"{experiment.name}-summary.txt"
    text = format_sweep(*sweep) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def has_figure(experiment: Experiment) -> bool:
    return experiment.kind in ("sweep", "ablate")


def figure(experiment: Experiment, folder: Path):
    """The experiment's figure from its saved JSON (None without one), captioned with the
    command that made the data — or, for a result from an earlier command, what it holds and
    how to remake it."""
    from gera import figures
    from gera.results import result_from_json

    payload = load(experiment, folder)
    if payload is None or not has_figure(experiment):
        return None
    problems = out_of_date(experiment, payload)
    caption = f"data: {experiment.command}" if not problems else (
        f"data: results/{experiment.name}.json, an earlier run that today's command would not "
        f"make ({'; '.join(problems)})<br>remake: python -m gera report --all --only "
        f"{experiment.name}, which runs {experiment.command}")
    result = result_from_json(payload)
    if isinstance(result, list):
        return figures.sweep_figure(result, caption)
    return figures.ablation_figure(result, caption)


def missing_note(experiment: Experiment) -> str:
    return (f"results/{experiment.name}.json not yet generated — run "
            f"`python -m gera report --all --only {experiment.name}` "
            f"(it runs `{experiment.command}`).")


def write_figures(experiments: Sequence[Experiment], folder: Path,
                  log: Callable[[str], None] = print) -> list[Path]:
    """results/figures/NAME.html and .png for each experiment with a figure and a JSON, and
    each sweep's summary tables."""
    from gera.figures import save

    written = []
    for experiment in experiments:
        summary = write_summary(experiment, folder)
        written += [summary] if summary else []
        fig = figure(experiment, folder)
        if fig is None:
            if has_figure(experiment):
                log(f"[{experiment.name}] no figure: {missing_note(experiment)}")
            continue
        paths, problem = save(fig, Path(folder) / "figures" / experiment.name)
        written += paths
        if problem:
            log(f"[{experiment.name}] {problem}")
    for path in written:
        log(f"wrote {path}")
    return written
