"""``python -m gera {compare,sweep,ablate,report,train,embed,bench}`` — the same functions the
app drives. Argument parsing and printing only: each command imports the library (and torch)
when it runs, so ``--help`` starts at once."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

from gera.errors import GeraError
from gera.io import atomic_write
from gera.methods import DEFAULT_METHODS, METHODS
from gera.settings import CompareSettings, TrainConfig


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _seeds(text: str) -> list[int]:
    """``5`` → seeds 0..4; ``3,7,9`` → exactly those."""
    values = _int_list(text)
    return list(range(values[0])) if len(values) == 1 and "," not in text else values


def _add_common(p: argparse.ArgumentParser, budget: bool = True) -> None:
    p.add_argument("--task", default="fashion-mnist", help="fashion-mnist | emoji | spoken-words | folder:<path>")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task constructor option, e.g. n_test=2000 (repeatable)")
    if budget:
        p.add_argument("--budget", type=int, default=100, help="paired-data budget N (validation included)")
    p.add_argument("--seeds", type=_seeds, default=list(range(5)),
                   help="a count (5 → seeds 0-4) or a list (0,3,7); default 5")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--encoder-a", default=None, help="image/speech encoder (default: the task's)")
    p.add_argument("--encoder-b", default=None, help="text encoder (default: minilm; phonetic for speech tasks)")
    p.add_argument("--unpaired-a", type=int, default=None, help="unpaired A pool size (default: the task's)")
    p.add_argument("--unpaired-b", type=int, default=None, help="unpaired B pool size (default: the task's)")
    p.add_argument("--fits", "--grid-size", dest="grid_size", type=int, default=6,
                   help="tuning budget: fits per method, the same for every method, spent on each "
                        "method's search (1 = defaults only)")
    p.add_argument("--json", type=Path, default=None, help="write the full result as JSON here")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that run seeds in parallel (default: one per core, at most one "
                        "per seed; 1 = here, one by one)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on Ray (optional extra: requirements-ray.txt): 'local' starts a local "
                        "instance of --workers CPUs for this command; or a cluster address "
                        "('auto', ray://host:10001), whose nodes must see the embedding cache "
                        "folder at the same path")
    train = p.add_argument_group("training (the trained methods)")
    for f in fields(TrainConfig):
        kind = {bool: _bool, int: int, float: float, str: str}[type(f.default)]
        train.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                           help=f"default {f.default}")


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def _train_config(args) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return replace(TrainConfig(), **overrides)


def _settings(args, budget: int) -> CompareSettings:
    from gera.data import parse_task_options

    return CompareSettings(task=args.task, task_options=parse_task_options(args.task_option),
                           budget=budget, seeds=args.seeds,
                           methods=[m.strip() for m in args.methods.split(",") if m.strip()],
                           encoder_a=args.encoder_a, encoder_b=args.encoder_b,
                           unpaired_a=args.unpaired_a, unpaired_b=args.unpaired_b,
                           grid_size=args.grid_size, train=_train_config(args))


def _report_stage(event) -> None:
    """One line per finished stage on stderr (an embedding pass, each method's fit)."""
    from gera.results import EmbedProgress, Evaluated

    if isinstance(event, EmbedProgress) and event.done == event.total:
        print(f"  embedded {event.total} {event.side.upper()} items", file=sys.stderr)
    elif isinstance(event, Evaluated):
        print(f"  seed {event.seed}: {event.method} fitted, evaluating ({event.index + 1}/"
              f"{event.total})", file=sys.stderr)


def _write_json(path: Path | None, payload) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))
    print(f"wrote {path}", file=sys.stderr)


def _executor(args):
    from gera.executors import default_workers, seed_executor

    if args.ray is not None:  # a local instance gets every core: tasks of all budgets queue
        return seed_executor(args.workers or default_workers(), ray=args.ray)
    workers = args.workers if args.workers is not None else min(default_workers(), len(args.seeds))
    return seed_executor(workers)


def cmd_compare(args) -> None:
    from gera.experiment import compare
    from gera.report import format_table

    with _executor(args) as executor:
        result = compare(_settings(args, args.budget), progress=_report_stage, executor=executor)
    print(format_table(result))
    print(f"\nwall time {result.wall_s:.0f} s")
    _write_json(args.json, result.to_json())


def cmd_sweep(args) -> None:
    from gera.experiment import compare_many
    from gera.report import format_table

    results = []
    with _executor(args) as executor:
        for result in compare_many([_settings(args, b) for b in args.budgets],
                                   progress=_report_stage, executor=executor):
            print(format_table(result) + "\n")
            results.append(result.to_json())
            _write_json(args.json, results)  # after every budget: a long sweep keeps what it finished


def cmd_snapshot(args) -> None:
    from gera.snapshot import make

    splits, size = make([_settings(args, b) for b in args.budgets], args.out, args.dtype,
                        progress=_report_stage)
    print(f"wrote {args.out}: {splits} splits, {size / 2**20:.1f} MiB; run it with "
          f"--task snapshot:{args.out}")


def cmd_ablate(args) -> None:
    from gera.experiment import ablate
    from gera.report import format_ablation

    values = [_parse_value(v) for v in args.values.split(",")]
    with _executor(args) as executor:
        result = ablate(_settings(args, args.budget), args.param, values, progress=_report_stage,
                        executor=executor)
    print(format_ablation(result))
    _write_json(args.json, result.to_json())


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def cmd_report(args) -> None:
    """Re-print saved results; for a sweep, one compact budget × method table per metric."""
    from gera.report import format_ablation, format_search_spaces, format_sweep, format_table
    from gera.results import AblationResult, result_from_json

    if args.all:
        report_all(args)
        return
    if args.tuning:
        n, dim_a, dim_b = args.tuning
        print(format_search_spaces(n, dim_a, dim_b))
        return
    if args.path is None:
        raise GeraError("Give a results file written with --json, --tuning N,DIM_A,DIM_B or "
                        "--all.")
    try:
        result = result_from_json(json.loads(args.path.read_text()))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise GeraError(f"Cannot read results file {args.path} ({err}). Give a JSON file written "
                        "by compare, sweep or ablate with --json.") from err
    if isinstance(result, list):
        print(format_sweep(result, [m.strip() for m in args.metrics.split(",")]))
    elif isinstance(result, AblationResult):
        print(format_ablation(result))
    else:
        print(format_table(result))


def report_all(args) -> None:
    """``report --all``: every named experiment of ``gera.results_set`` whose JSON is missing or
    out of date, run one after another, then every figure and sweep summary; the wall times go
    to stdout and to results/report-all.txt."""
    import time
    from functools import partial

    from gera.results_set import format_outcomes, run_all, select, write_figures

    start = time.perf_counter()
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    log = partial(print, file=sys.stderr, flush=True)
    outcomes = run_all(args.results, names, force=args.force, run=not args.figures_only, log=log)
    write_figures(select(names), args.results, log=log)
    command = " ".join(["python -m gera report --all"] + (["--only", args.only] if args.only
                                                           else [])
                       + ["--force"] * args.force + ["--figures-only"] * args.figures_only)
    table = format_outcomes(outcomes, time.perf_counter() - start, command)
    print(table)
    path = args.results / "report-all.txt"
    atomic_write(path, lambda f: f.write((table + "\n").encode()))
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        raise GeraError(f"{len(failed)} experiment(s) failed: {', '.join(failed)} (see above).")


def cmd_train(args) -> None:
    """Fit one method on one seed's split and save it as a checkpoint (safetensors + JSON)."""
    from gera.checkpoint import save_result_alignments
    from gera.experiment import compare
    from gera.report import format_table

    settings = replace(_settings(args, args.budget), seeds=args.seeds[:1])
    result = compare(settings, progress=_report_stage)
    print(format_table(result))
    for path in save_result_alignments(result, settings, args.out, float16=args.float16):
        print(f"saved {path}", file=sys.stderr)


def cmd_embed(args) -> None:
    """Fill the embedding cache with every item ``compare`` needs at these budgets and seeds."""
    import numpy as np

    from gera.data import parse_task_options
    from gera.embedded import EmbeddedTask, split_items

    data = EmbeddedTask.open(args.task, parse_task_options(args.task_option), args.encoder_a,
                             args.encoder_b)
    task = data.task
    a_parts, b_parts = [], []
    for budget in args.budgets:
        for seed in args.seeds:
            a, b = split_items(task.split(min(budget, task.max_budget()), seed, args.unpaired_a, args.unpaired_b))
            a_parts.append(a)
            b_parts.append(b)
    sides = [(side, items, encoder, np.concatenate(parts)) for side, items, encoder, parts in (
        ("a", task.a, data.encoder_a, a_parts), ("b", task.b, data.encoder_b, b_parts))]
    if args.ray is not None:
        _embed_on_ray(args, data, sides)
    else:  # fill, not ensure: the embeddings stream to disk a chunk at a time, never all held
        for _, items, encoder, indices in sides:
            data.cache.fill(encoder, items, indices)
    print(f"cache holds every item for {args.task} at budgets {args.budgets}, seeds {args.seeds}")


def _embed_on_ray(args, data, sides) -> None:
    """``embed --ray``: Ray Data, one encoder actor per worker (or per GPU with --ray-gpus)."""
    from functools import partial

    from gera.data import parse_task_options
    from gera.distributed import embed_with_ray, ray_session
    from gera.encoders import get_encoder

    options = parse_task_options(args.task_option)
    with ray_session(args.ray, num_cpus=args.workers, num_gpus=None):
        for side, items, encoder, indices in sides:
            name = encoder.name
            count = embed_with_ray(
                data.cache, encoder, items, partial(get_encoder, name, items.modality),
                partial(_task_side, args.task, options, side), indices, workers=args.workers,
                num_gpus=args.ray_gpus)
            print(f"  embedded {count} {side.upper()} items on Ray", file=sys.stderr)


def _task_side(task: str, options: dict, side: str):
    """One side's ItemSet of a task, built where it is called (a Ray worker)."""
    from gera.data import get_task

    return getattr(get_task(task, **options), side)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gera", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="GeRA vs the baselines at one budget, mean ± std over seeds")
    _add_common(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("sweep", help="compare at several budgets")
    _add_common(p, budget=False)
    p.add_argument("--budgets", type=_int_list, default=[10, 30, 100, 300, 1000, 3000])
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("ablate", help="GeRA with one setting varied, each against contrastive-only")
    _add_common(p)
    p.add_argument("--param", required=True, help="alpha, k, k_pool, kernel, geo_batch, … or unpaired_a / unpaired_b")
    p.add_argument("--values", required=True, help="comma-separated values, e.g. 0.1,1,10,100")
    p.set_defaults(func=cmd_ablate)
    p = sub.add_parser("report", help="print saved results (compact metric × budget tables for a sweep)")
    p.add_argument("path", type=Path, nargs="?", help="a JSON file written with --json")
    p.add_argument("--tuning", type=_int_list, default=None, metavar="N,DIM_A,DIM_B",
                   help="instead: print every method's tuning search for N training pairs and "
                        "these input dimensions (the README's tuning table)")
    p.add_argument("--metrics", default="recall@1_a2b,zero_shot_top1,knn_jaccard_a",
                   help="metrics for a sweep's tables")
    p.add_argument("--all", action="store_true",
                   help="instead: run every named experiment (gera/results_set.py) whose "
                        "results/NAME.json is missing or from another command, then write every "
                        "figure (results/figures/NAME.html, .png) and sweep summary")
    p.add_argument("--only", default=None, metavar="NAME,...", help="with --all: just these")
    p.add_argument("--force", action="store_true", help="with --all: re-run even current results")
    p.add_argument("--figures-only", action="store_true",
                   help="with --all: run nothing, draw figures from the JSONs there are")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="with --all: the results folder")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("train", help="fit the methods on one seed and save checkpoints")
    _add_common(p)
    p.add_argument("--out", type=Path, default=Path("checkpoints"))
    p.add_argument("--float16", action="store_true", help="store the weights' matrices as float16")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("embed", help="fill the embedding cache for a task")
    _add_common(p, budget=False)
    p.add_argument("--budgets", type=_int_list, default=[10, 30, 100, 300, 1000, 3000])
    p.add_argument("--ray-gpus", type=float, default=0,
                   help="with --ray: GPUs per encoder actor (1 = one actor per GPU)")
    p.set_defaults(func=cmd_embed)
    p = sub.add_parser("snapshot", help="save a sweep's embeddings and splits in one file, to run "
                                        "it where the encoders and data are not installed")
    _add_common(p, budget=False)
    p.add_argument("--budgets", type=_int_list, default=[10, 30, 100, 300, 1000, 3000])
    p.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="float16 halves the file; its rows are rounded (a timing run)")
    p.set_defaults(func=cmd_snapshot)
    p = sub.add_parser("bench", help="training-step and encoder-throughput benchmarks")
    p.add_argument("--task", default="fashion-mnist")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3, help="whole training jobs timed per method")
    p.add_argument("--encoder-items", type=int, default=512, help="items per encoder throughput run")
    p.add_argument("--skip-encoders", action="store_true")
    p.add_argument("--device", default="auto", help="where the heads train: auto | cpu | cuda")
    p.add_argument("--matmul-precisions", type=lambda s: s.split(","), default=["highest", "medium"],
                   help="training cost measured at each of these TrainConfig.matmul_precision "
                        "values, in one run (default highest,medium)")
    p.add_argument("--stack-fits", dest="stack_fits_values", type=lambda s: s.split(","),
                   default=["auto"],
                   help="...and at each of these TrainConfig.stack_fits values (on CUDA "
                        "'never,auto' times eager steps against steps replayed as CUDA graphs)")
    p.add_argument("--scale", action="store_true",
                   help="instead: kNN graph build (exact / approximate, recall) and GeRA step time "
                        "at large synthetic pools (gera.scale)")
    p.add_argument("--scale-sizes", type=_int_list, default=[10_000, 100_000, 1_000_000],
                   help="pool sizes for --scale")
    p.add_argument("--scale-dim", type=int, default=384, help="pool A's dimension for --scale")
    p.add_argument("--scale-steps", type=int, default=200, help="training steps timed per size")
    p.add_argument("--speech-words", action="store_true",
                   help="instead: the 63 single words said by held-out synthetic voices, top-5 "
                        "among all spoken-words texts, for the shipped checkpoints at the largest "
                        "budget; exits 1 when GeRA misses the 80 %% target")
    p.add_argument("--checkpoints", default="checkpoints", help="folder for --speech-words")
    p.set_defaults(func=lambda a: __import__("gera.bench", fromlist=["main"]).main(a))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except GeraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
