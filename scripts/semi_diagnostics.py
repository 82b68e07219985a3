"""What the semi-supervised methods did with the unpaired data, seed by seed.

Re-fits each method at the setting a comparison chose for that seed (read from its ``--json``;
training is deterministic per seed) — or at ``--params`` — on the same split, and prints its
``diagnostics``: pseudo-pairs accepted per round, their precision where both sides have classes
(a pseudo-pair is correct when the caption's class equals the image's), rounds kept; pool points
the propagation reached. Labels are read here only, never by a method.

    python scripts/semi_diagnostics.py --task fashion-mnist --budget 100 \\
        --from-json results/fashion-mnist-100-semi.json --methods pseudo,propagation
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gera.embedded import EmbeddedTask, split_items  # noqa: E402
from gera.experiment import SeedData, test_metrics  # noqa: E402
from gera.methods import method_class  # noqa: E402
from gera.settings import TrainConfig  # noqa: E402


def precision(task, split, info) -> float | None:
    """Share of a round's pseudo-pairs whose caption class equals the image class."""
    if not info["a"]:
        return None
    a_items = split.unpaired_a[info["a"]]
    b_all = list(split.train_pairs[:, 1]) + list(split.unpaired_b)
    b_items = [b_all[j] for j in info["b"]]
    ca, cb = task.classes("a", a_items), task.classes("b", b_items)
    if ca is None or cb is None:
        return None
    return sum(x == y for x, y in zip(ca, cb)) / len(ca)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="fashion-mnist")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--methods", default="pseudo,propagation")
    p.add_argument("--from-json", type=Path, help="a compare --json: use its chosen settings")
    p.add_argument("--params", default="{}", help="JSON settings when no --from-json")
    p.add_argument("--out", type=Path, help="write the diagnostics as JSON here")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    chosen = json.loads(args.from_json.read_text())["methods"] if args.from_json else None
    data = EmbeddedTask.open(args.task, {}, None, None)
    task, out = data.task, []
    for seed in seeds:
        split = task.split(args.budget, seed)
        data.ensure(*split_items(split))
        seed_data = SeedData.prepare(data, split, seed)
        for name in methods:
            params = (chosen[name]["chosen"][seeds.index(seed)] if chosen
                      else json.loads(args.params))
            method = method_class(name).from_settings(TrainConfig(), seed, **params)
            alignment = method.fit(seed_data.pairs, seed_data.unpaired, validate=seed_data.validate)
            diag = dict(alignment.diagnostics)
            metrics = test_metrics(alignment, data, split, 10)
            headline = {k: round(100 * v, 1) for k, v in metrics.items()
                        if k in ("zero_shot_top1", "recall@1_a2b", "recall@1_b2a")}
            line = f"seed {seed} {name} {params} test {headline}"
            for info in diag.get("rounds", []):
                info["precision"] = precision(task, split, info)
                prec = "—" if info["precision"] is None else f"{100 * info['precision']:.1f}%"
                val = "—" if info["val"] is None else f"{info['val']:.3f}"
                line += (f"\n    round {info['round']}: {info['pseudo_pairs']} pseudo-pairs, "
                         f"precision {prec}, val {val} (base {diag['base_val']:.3f}), "
                         f"{'kept' if info['kept'] else 'dropped'}")
                del info["a"], info["b"]
            if "rounds_kept" in diag:
                line += f"\n    rounds kept: {diag['rounds_kept']}"
            if "spread_seen_a" in diag:
                line += (f"\n    propagation reached {diag['spread_seen_a']}/{diag['unpaired_pool_a']}"
                         f" unpaired A and {diag['spread_seen_b']}/{diag['unpaired_pool_b']} "
                         "unpaired B pool points")
            print(line, flush=True)
            out.append({"seed": seed, "method": name, "params": params, "test": metrics,
                        "diagnostics": diag})
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
