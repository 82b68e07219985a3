"""How far two saved comparisons (or sweeps) of the same runs lie apart, mean by mean, in units
of seed std: what shows that a timing change (``--matmul-precision medium``, float16 snapshot rows)
kept every number within seed noise.

    python scripts/results_agree.py results/emoji-sweep.json results/emoji-sweep-medium.json [--top 10]

For each (budget, method, metric) in both: |mean_B − mean_A| / max(std_A, std_B). Prints how many
means are equal (to 1e-9), how many move by more than one std, and the largest moves.
"""
import argparse
import json


def runs_by_budget(path: str) -> dict:
    payload = json.load(open(path))
    return {run["budget"]: run for run in (payload if isinstance(payload, list) else [payload])}


def main(first: str, second: str, top: int) -> None:
    a, b = runs_by_budget(first), runs_by_budget(second)
    moves, equal = [], 0
    for budget in sorted(set(a) & set(b)):
        for method, record in a[budget]["methods"].items():
            other = b[budget]["methods"].get(method)
            if other is None:
                continue
            for metric, stat in record["metrics"].items():
                if metric not in other["metrics"]:
                    continue
                mine, theirs = stat, other["metrics"][metric]
                diff, spread = abs(theirs["mean"] - mine["mean"]), max(mine["std"], theirs["std"])
                if diff < 1e-9:
                    equal += 1
                moves.append((diff / max(spread, 1e-12), budget, method, metric,
                              100 * mine["mean"], 100 * theirs["mean"], 100 * spread))
    print(f"{len(moves)} means in both ({first} → {second}): {equal} equal, "
          f"{sum(1 for m in moves if m[0] > 1)} move by more than one seed std")
    print(f"{'moved (std)':>11}  {'budget':>6}  {'method':<12} {'metric':<18} {'A':>6} {'B':>6} {'std':>5}")
    for moved, budget, method, metric, mean_a, mean_b, spread in sorted(moves, reverse=True)[:top]:
        print(f"{moved:11.2f}  {budget:>6}  {method:<12} {metric:<18} {mean_a:6.1f} {mean_b:6.1f} {spread:5.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    main(args.first, args.second, args.top)
