"""``python -m gera {compare,sweep,train,embed,bench}`` — the same functions the app drives."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from gera.data import parse_task_options
from gera.errors import GeraError
from gera.io import atomic_write
from gera.methods import METHODS
from gera.train import TrainConfig

TABLE_METRICS = ("zero_shot_top1", "zero_shot_top5", "recall@1_a2b", "recall@5_a2b",
                 "recall@10_a2b", "recall@1_b2a", "recall@5_b2a", "recall@10_b2a",
                 "knn_jaccard_a", "knn_jaccard_b", "trustworthiness_a", "trustworthiness_b")


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
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--encoder-a", default=None, help="image/speech encoder (default: the task's)")
    p.add_argument("--encoder-b", default=None, help="text encoder (default: minilm)")
    p.add_argument("--unpaired-a", type=int, default=None, help="unpaired A pool size (default: the task's)")
    p.add_argument("--unpaired-b", type=int, default=None, help="unpaired B pool size (default: the task's)")
    p.add_argument("--grid-size", type=int, default=3,
                   help="settings tried per method, the same for every method (1 = defaults only)")
    p.add_argument("--json", type=Path, default=None, help="write the full result as JSON here")
    train = p.add_argument_group("training (GeRA and contrastive-only)")
    for f in fields(TrainConfig):
        if f.name == "seed":
            continue
        kind = {bool: _bool, int: int, float: float, str: str}[type(f.default)]
        train.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                           help=f"default {f.default}")


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def _train_config(args) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return replace(TrainConfig(), **overrides)


def _settings(args, budget: int):
    from gera.experiment import CompareSettings

    return CompareSettings(task=args.task, task_options=parse_task_options(args.task_option),
                           budget=budget, seeds=args.seeds,
                           methods=[m.strip() for m in args.methods.split(",") if m.strip()],
                           encoder_a=args.encoder_a, encoder_b=args.encoder_b,
                           unpaired_a=args.unpaired_a, unpaired_b=args.unpaired_b,
                           grid_size=args.grid_size, train=_train_config(args))


def _report_stage(event: dict) -> None:
    """One line per finished stage on stderr (an embedding pass, each method's fit)."""
    stage = event["stage"]
    if stage == "embed" and event["done"] == event["total"]:
        print(f"  embedded {event['total']} {event['side'].upper()} items", file=sys.stderr)
    elif stage == "evaluate":
        print(f"  seed {event['seed']}: {event['method']} fitted, evaluating", file=sys.stderr)


def format_table(result: dict) -> str:
    """Mean ± std per method and metric, then GeRA − each baseline (paired over seeds)."""
    methods = result["methods"]
    metrics = [m for m in TABLE_METRICS if any(m in r["metrics"] for r in methods.values())]
    n_seeds = len(result["config"]["seeds"])
    head = f"{result['task']}  budget {result['budget']}  seeds {n_seeds}  " \
           f"({result['config']['encoder_a']} ↔ {result['config']['encoder_b']})"
    lines = [head, _row(["method"] + metrics)]
    for name, rec in methods.items():
        lines.append(_row([name] + [_pm(rec["metrics"].get(m)) for m in metrics]))
    diffs = result.get("paired_differences", {})
    if diffs:
        lines += ["", "GeRA − baseline, paired over the same seeds (mean ± std, percentage points):",
                  _row(["vs"] + metrics)]
        for name, d in diffs.items():
            lines.append(_row([name] + [_pm(d.get(m), signed=True) for m in metrics]))
    if "ceiling" in result:
        c = result["ceiling"]
        lines += ["", f"supervised ceiling (linear probe, {c['n_labels']} labels): top-1 "
                      f"{100 * c['linear_probe_top1']:.1f}"]
    chosen = {n: r["chosen"] for n, r in methods.items()}
    lines += ["", "chosen on validation (per seed): " +
              "; ".join(f"{n}: {', '.join(_fmt_params(p) for p in c)}" for n, c in chosen.items())]
    return "\n".join(lines)


def _fmt_params(p: dict) -> str:
    return "/".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def _pm(stat, signed: bool = False) -> str:
    if stat is None:
        return "–"
    sign = "+" if signed else ""
    return f"{100 * stat['mean']:{sign}.1f} ± {100 * stat['std']:.1f}"


def _row(cells) -> str:
    return "  ".join(f"{c:<12}" if i == 0 else f"{c:>13}" for i, c in enumerate(cells))


def _write_json(path: Path | None, payload) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))
    print(f"wrote {path}", file=sys.stderr)


def cmd_compare(args) -> None:
    from gera.experiment import compare, to_json

    result = to_json(compare(_settings(args, args.budget), progress=_report_stage))
    print(format_table(result))
    print(f"\nwall time {result['wall_s']:.0f} s")
    _write_json(args.json, result)


def cmd_sweep(args) -> None:
    from gera.experiment import compare, to_json

    results = []
    for budget in args.budgets:
        result = to_json(compare(_settings(args, budget), progress=_report_stage))
        print(format_table(result) + "\n")
        results.append(result)
        _write_json(args.json, results)  # after every budget: a long sweep keeps what it finished


def cmd_ablate(args) -> None:
    from gera.experiment import ablate

    values = [_parse_value(v) for v in args.values.split(",")]
    result = ablate(_settings(args, args.budget), args.param, values, progress=_report_stage)
    print(format_ablation(result))
    _write_json(args.json, result)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def format_ablation(result: dict) -> str:
    """One row per value: GeRA's metrics, and GeRA − contrastive paired over the same seeds."""
    first = result["runs"][0]
    metrics = [m for m in TABLE_METRICS if m in first["methods"]["gera"]["metrics"]]
    lines = [f"{result['task']}  budget {result['budget']}  seeds {len(first['config']['seeds'])}: "
             f"GeRA with {result['param']} varied (nothing tuned); below each row, GeRA − contrastive",
             _row([result["param"]] + metrics)]
    for run in result["runs"]:
        gera, diff = run["methods"]["gera"]["metrics"], run["paired_differences"]["contrastive"]
        lines.append(_row([str(run["value"])] + [_pm(gera.get(m)) for m in metrics]))
        lines.append(_row(["  Δ contr."] + [_pm(diff.get(m), signed=True) for m in metrics]))
    return "\n".join(lines)


def cmd_report(args) -> None:
    """Re-print saved results; for a sweep, one compact budget × method table per metric."""
    try:
        payload = json.loads(args.path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise GeraError(f"Cannot read results file {args.path} ({err}). Give a JSON file written "
                        "by compare, sweep or ablate with --json.") from err
    if isinstance(payload, list):
        print(format_sweep(payload, [m.strip() for m in args.metrics.split(",")]))
    elif "runs" in payload:
        print(format_ablation(payload))
    else:
        print(format_table(payload))


def format_sweep(results: list[dict], metrics: list[str]) -> str:
    """Metric vs budget: mean ± std per method, and GeRA − contrastive paired over seeds."""
    methods = list(results[0]["methods"])
    lines = []
    for metric in metrics:
        lines += [f"{metric} — {results[0]['task']}, seeds {len(results[0]['config']['seeds'])}",
                  _row(["budget"] + methods + ["GeRA − contr."])]
        for r in results:
            diff = r.get("paired_differences", {}).get("contrastive", {}).get(metric)
            lines.append(_row([str(r["budget"])] + [_pm(r["methods"][m]["metrics"].get(metric))
                                                     for m in methods] + [_pm(diff, signed=True)]))
        lines.append("")
    return "\n".join(lines).rstrip()


def cmd_train(args) -> None:
    """Fit one method on one seed's split and save it as a checkpoint (safetensors + JSON)."""
    from gera.checkpoint import save_alignment
    from gera.experiment import compare, to_json

    settings = _settings(args, args.budget)
    settings.seeds = settings.seeds[:1]
    result = compare(settings, progress=_report_stage)
    summary = to_json(result)
    print(format_table(summary))
    for name, alignment in result["_alignments"].items():
        meta = {"task": args.task, "budget": args.budget, "method": name,
                "encoder_a": summary["config"]["encoder_a"], "encoder_b": summary["config"]["encoder_b"],
                "seed": settings.seeds[0], "chosen": summary["methods"][name]["chosen"][0],
                "metrics": {m: s["mean"] for m, s in summary["methods"][name]["metrics"].items()}}
        paths = save_alignment(alignment, args.out / f"{args.task.replace(':', '_').replace('/', '_')}-{name}", meta)
        print(f"saved {paths[0]}", file=sys.stderr)


def cmd_embed(args) -> None:
    """Fill the embedding cache with every item ``compare`` needs at these budgets and seeds."""
    from gera.cache import EmbeddingCache
    from gera.data import get_task
    from gera.encoders import DEFAULT_ENCODERS, get_encoder
    from gera.experiment import EmbeddedTask, split_items

    task = get_task(args.task, **parse_task_options(args.task_option))
    enc_a = get_encoder(args.encoder_a or DEFAULT_ENCODERS[task.a.modality], task.a.modality)
    enc_b = get_encoder(args.encoder_b or DEFAULT_ENCODERS[task.b.modality], task.b.modality)
    data = EmbeddedTask(task, enc_a, enc_b, EmbeddingCache())
    a_parts, b_parts = [], []
    for budget in args.budgets:
        for seed in args.seeds:
            a, b = split_items(task.split(min(budget, task.max_budget()), seed, args.unpaired_a, args.unpaired_b))
            a_parts.append(a)
            b_parts.append(b)
    data.ensure(np.concatenate(a_parts), np.concatenate(b_parts))
    print(f"cache holds every item for {args.task} at budgets {args.budgets}, seeds {args.seeds}")


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
    p.add_argument("path", type=Path, help="a JSON file written with --json")
    p.add_argument("--metrics", default="recall@1_a2b,zero_shot_top1,knn_jaccard_a",
                   help="metrics for a sweep's tables")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("train", help="fit the methods on one seed and save checkpoints")
    _add_common(p)
    p.add_argument("--out", type=Path, default=Path("checkpoints"))
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("embed", help="fill the embedding cache for a task")
    _add_common(p, budget=False)
    p.add_argument("--budgets", type=_int_list, default=[10, 30, 100, 300, 1000, 3000])
    p.set_defaults(func=cmd_embed)
    p = sub.add_parser("bench", help="training-step and encoder-throughput benchmarks")
    p.add_argument("--task", default="fashion-mnist")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3, help="whole training jobs timed per method")
    p.add_argument("--encoder-items", type=int, default=512, help="items per encoder throughput run")
    p.add_argument("--skip-encoders", action="store_true")
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
