"""``python -m gera bench``: what a GeRA step costs against a contrastive step, and how close each
default encoder's embedding pipeline runs to its bare forward pass. Prints figures; asserts nothing.

Training figures are medians over ``--repeats`` whole jobs, measured in one run so the ratios
compare like with like on a noisy machine.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np

from gera.data import get_task
from gera.device import resolve_device
from gera.embedded import EmbeddedTask, split_items
from gera.encoders import get_encoder
from gera.encoders.throughput import measure_throughput
from gera.experiment import validation_score
from gera.methods import METHODS, featured, featured_twin, label, method_class
from gera.settings import TrainConfig
from gera.train import train


def training_costs(task_name: str, budget: int, repeats: int, device: str = "auto",
                   matmul_precision: str = "highest", stack_fits: str = "auto") -> dict:
    data = EmbeddedTask.open(task_name)
    task = data.task
    split = task.split(budget, 0)
    data.ensure(*split_items(split))
    args = (data.a(split.train_pairs[:, 0]), data.b(split.train_pairs[:, 1]),
            data.a(split.unpaired_a), data.b(split.unpaired_b))
    validate = validation_score(data, split, task.val_metric)
    base = TrainConfig(device=device, matmul_precision=matmul_precision, stack_fits=stack_fits)
    out = {"device": resolve_device(base.device), "pool_a": len(args[0]) + len(args[2]),
           "pool_b": len(args[1]) + len(args[3]), "n_train_pairs": len(args[0])}
    for name in (featured(), featured_twin()):
        method = method_class(name)(base)
        # Untimed: the pool's deduplication and kNN graph are built once and kept (as in a
        # comparison), so neither the first method nor the first precision measured pays them.
        train(*args, method.training_objective(), replace(method.config, max_steps=10), method=name)
        fixed = [train(*args, method.training_objective(), replace(method.config, max_steps=200),
                       method=name) for _ in range(repeats)]
        jobs = [train(*args, method.training_objective(), method.config, validate=validate,
                      method=name)
                for _ in range(repeats)]
        out[name] = {
            "ms_per_step": 1000 * statistics.median(r.wall_s / r.steps_run for r in fixed),
            "points_per_step": fixed[0].points_per_step,
            "job_wall_s": statistics.median(r.wall_s for r in jobs),
            "job_steps": statistics.median(r.steps_run for r in jobs),
        }
    g, c = out[featured()], out[featured_twin()]
    out["ratio_step"] = g["ms_per_step"] / c["ms_per_step"]
    out["ratio_job"] = g["job_wall_s"] / c["job_wall_s"]
    out["ratio_job_per_step"] = (g["job_wall_s"] / g["job_steps"]) / (c["job_wall_s"] / c["job_steps"])
    return out


# (encoder, task whose items it embeds, side): every bundled encoder on data it is meant for.
ENCODER_BENCH = (("mobilenet_v2", "fashion-mnist", "a"), ("efficientnet_lite0", "emoji", "a"),
                 ("minilm", "emoji", "b"), ("speech_embedding", "spoken-words", "a"),
                 ("whisper_base", "spoken-words", "a"))


def encoder_costs(n_items: int) -> dict:
    out = {}
    for name, task_name, side in ENCODER_BENCH:
        items = getattr(get_task(task_name), side)
        sample = items.load(np.arange(min(n_items, len(items))))
        out[name] = measure_throughput(get_encoder(name, items.modality), sample)
    return out


def speech_words(folder: str) -> bool:
    """``--speech-words``: the single-word check (``gera.speech_check``) of every shipped
    spoken-words checkpoint at the largest budget. True when the featured method meets the
    target."""
    from pathlib import Path

    from gera.checkpoint import load_alignment
    from gera.speech_check import TARGET_TOP5, SingleWords

    task = get_task("spoken-words")
    largest = task.max_budget()
    paths = sorted(Path(folder).glob(f"spoken-words-N{largest}-*.safetensors"))
    if not paths:
        print(f"no spoken-words checkpoints at N = {largest} in {folder}: run "
              "`bash scripts/make_checkpoints.sh spoken-words`")
        return False
    loaded = {meta["method"]: (alignment, meta)
              for alignment, meta in (load_alignment(p) for p in paths)}
    first = next(iter(loaded.values()))[1]
    words = SingleWords(task, first["encoder_a"], first["encoder_b"])
    print(f"single words — {len(words.words)} words (digits, letters, NATO) said by held-out "
          f"synthetic voices, among all {len(words.texts)} texts of spoken-words; checkpoints "
          f"N = {largest} ({first['encoder_a']} ↔ {first['encoder_b']}) in {folder}")
    print(f"{'method':<14}{'top-5, mean':>12}  per voice ({', '.join(words.voices)})")
    met = False
    for name in [m for m in METHODS if m in loaded]:
        result = words.check(loaded[name][0], k=5)
        ok = result.rate >= TARGET_TOP5
        met |= ok and name == featured()
        per_voice = "  ".join(f"{100 * r:5.1f}" for r in result.rate_by_voice.values())
        print(f"{name:<14}{100 * result.rate:11.1f}%  {per_voice}  {'✅' if ok else '❌'}")
        if name == featured() and result.misses:
            print(f"  {label(name)} misses (first voice): " + ", ".join(
                f"{w} → {t}" for w, t in result.misses.items()))
    print(f"target: ≥ {100 * TARGET_TOP5:.0f} % in the top 5 for {label(featured())} — "
          f"{'met' if met else 'MISSED'}")
    return met


def bf16_matmul_is_fast() -> bool:
    """Whether ``matmul_precision="medium"`` changes anything on this CPU: oneDNN runs float32
    products in bfloat16 only where the CPU has bfloat16 units (AMX or AVX512-BF16)."""
    import torch

    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _print_training(t: dict, variant: str, precision: str) -> None:
    same = precision == "medium" and t["device"].type == "cpu" and not bf16_matmul_is_fast()
    print(f"\n{variant}"
          + (" (this CPU has no bfloat16 units: the same products as highest)" if same else ""))
    print(f"{'':<14}{'ms/step':>10}{'points/step':>13}{'job wall s':>12}{'job steps':>11}")
    for name in (featured(), featured_twin()):
        r = t[name]
        print(f"{name:<14}{r['ms_per_step']:>10.2f}{r['points_per_step']:>13.0f}"
              f"{r['job_wall_s']:>12.2f}{r['job_steps']:>11.0f}")
    print(f"{label(featured())} / {featured_twin()}: step {t['ratio_step']:.2f}×, whole job {t['ratio_job']:.2f}× "
          f"(per step within the job {t['ratio_job_per_step']:.2f}×)")


def main(args) -> None:
    if getattr(args, "scale", False):
        from gera.scale import run

        run(args.scale_sizes, args.scale_dim, args.scale_steps)
        return
    if getattr(args, "speech_words", False):
        if not speech_words(args.checkpoints):
            raise SystemExit(1)
        return
    cfg = TrainConfig()
    stacks = getattr(args, "stack_fits_values", None) or ["auto"]
    # every matmul precision at every stack-fits value; named by what varies
    variants = {" ".join([f"matmul precision {p}"] + ([f"stack-fits {f}"] if len(stacks) > 1 else [])):
                (p, f) for f in stacks for p in args.matmul_precisions}
    runs = {v: training_costs(args.task, args.budget, args.repeats, args.device, p, f)
            for v, (p, f) in variants.items()}
    first = next(iter(runs.values()))  # pools, points per step: the same in every variant
    print(f"training cost — task {args.task}, budget {args.budget} ({first['n_train_pairs']} training "
          f"pairs), pools A {first['pool_a']} / B {first['pool_b']}, device {first['device']}, "
          f"medians of {args.repeats}")
    print(f"default config: batch {cfg.batch_size} pairs, geo_batch {cfg.geo_batch} anchors × "
          f"(k {cfg.k} + 1) per modality, MLP {cfg.hidden} → {cfg.dim}")
    for variant, t in runs.items():
        _print_training(t, variant, variants[variant][0])
    baseline, *others = runs
    for other in others:
        speedups = "; ".join(what + " " + ", ".join(
            f"{name} {first[name][key] / runs[other][name][key]:.2f}×"
            for name in (featured(), featured_twin()))
            for key, what in (("ms_per_step", "per step"), ("job_wall_s", "whole job")))
        print(f"{other} against {baseline}: {speedups} faster")
    print("cost model: a contrastive step runs the heads on the batch's pairs (2·M points); GeRA adds "
          "geo_batch·(k+1) points per modality — on a CPU once per distinct point (or one "
          "whole-pool pass when the pool is smaller), on a GPU every point, repeats too — plus "
          "O(geo_batch·(k+1)²·d) for the two kernels.")
    g, c = first[featured()], first[featured_twin()]
    print(f"breakdown: head points per step {g['points_per_step']:.0f} vs {c['points_per_step']:.0f} "
          f"({g['points_per_step'] / c['points_per_step']:.2f}×) — the heads' matrix products dominate "
          "a CPU step, so the step ratio follows the points ratio; the kNN graph is built once per "
          "pool and shared by every fit of a seed")
    if not args.skip_encoders:
        print(f"\nencoder throughput ({args.encoder_items} items, items/s)")
        print(f"{'encoder':<18}{'pipeline':>10}{'bare':>10}{'ratio':>8}")
        for name, r in encoder_costs(args.encoder_items).items():
            print(f"{name:<18}{r['pipeline_items_per_s']:>10.1f}{r['bare_items_per_s']:>10.1f}{r['ratio']:>8.2f}")
