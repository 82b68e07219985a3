"""Where a saved sweep's time went: each budget's wall time (as the sweep recorded it, from its
start) and each method's fitting time per seed (mean ``fit_s``: its whole tuning search), then the
process-seconds of fitting per method over every budget and seed. What shows which method to
speed up, and whether the workers were kept busy (process-seconds / workers against the wall).

    python scripts/sweep_fit_times.py results/gpu/h200-sweep-stack-auto.json [more.json …]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
from gera.methods import method_class  # noqa: E402


def main(paths: list[str]) -> None:
    for path in paths:
        payload = json.load(open(path))
        runs = payload if isinstance(payload, list) else [payload]
        methods = list(runs[0]["methods"])
        print(path)
        print(f"{'budget':>6} {'wall s':>7}  " + " ".join(f"{m[:11]:>11}" for m in methods))
        total = dict.fromkeys(methods, 0.0)
        for run in runs:
            per_seed = []
            for m in methods:
                values = run["methods"][m].get("fit_s", {}).get("values", [0.0])
                total[m] += sum(values)
                per_seed.append(sum(values) / len(values))
            print(f"{run['budget']:>6} {run['wall_s']:7.1f}  " + " ".join(f"{v:11.2f}" for v in per_seed))
        own = {m: v for m, v in total.items() if not method_class(m).selects}  # auto: the others'
        print("process-seconds of fitting: " + ", ".join(f"{m} {v:.1f}" for m, v in own.items())
              + f"; all {sum(own.values()):.1f}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+")
    main(parser.parse_args().paths)
