"""How far two saved comparisons (or sweeps) of the same runs lie apart, mean by mean, in units
of seed std: what shows that a timing change (``--matmul-precision medium``, float16 snapshot rows)
kept every number within seed noise.

    python scripts/results_agree.py results/emoji-sweep.json results/emoji-sweep-medium.json [--top 10]

For each (budget, method, metric) in both: |mean_B − mean_A| / max(std_A, std_B). Prints how many
means are equal (to 1e-9), how many move by more than one std, the same per method, and the
largest moves.
"""
import argparse
import json


def runs_by_budget(path: str) -> dict:
    payload = json.load(open(path))
    return {run["budget"]: run for run in (payload if isinstance(payload, list) else [payload])}


def main(first: str, second: str, top: int) -> None:
    a, b = runs_by_budget(first), runs_by_budget(second)
    moves = []
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
                moves.append((diff / max(spread, 1e-12), budget, method, metric,
                              100 * mine["mean"], 100 * theirs["mean"], 100 * spread, diff < 1e-9))
    print(f"{len(moves)} means in both ({first} → {second}): {sum(m[-1] for m in moves)} equal, "
          f"{sum(1 for m in moves if m[0] > 1)} move by more than one seed std")
    for method in dict.fromkeys(m[2] for m in moves):  # registry order, as the tables
        mine = [m for m in moves if m[2] == method]
        print(f"  {method:<12} {sum(m[-1] for m in mine):4d} of "
              f"{len(mine)} equal, {sum(1 for m in mine if m[0] > 1):3d} move by more than one std, "
              f"the largest by {max(m[0] for m in mine):.2f}")
    print(f"{'moved (std)':>11}  {'budget':>6}  {'method':<12} {'metric':<18} {'A':>6} {'B':>6} {'std':>5}")
    for moved, budget, method, metric, mean_a, mean_b, spread, _ in sorted(moves, reverse=True)[:top]:
        print(f"{moved:11.2f}  {budget:>6}  {method:<12} {metric:<18} {mean_a:6.1f} {mean_b:6.1f} {spread:5.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    main(args.first, args.second, args.top)
