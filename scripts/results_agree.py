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
from collections import namedtuple


def runs_by_budget(path: str) -> dict:
    payload = json.load(open(path))
    return {run["budget"]: run for run in (payload if isinstance(payload, list) else [payload])}


# One mean in both files: how far it moved in seed stds (first, so moves sort by it), and whether
# it is the same number.
Move = namedtuple("Move", "stds budget method metric mean_a mean_b spread equal")


def tally(moves: list[Move]) -> tuple[int, int]:
    """(means equal, means moved by more than one seed std)."""
    return sum(m.equal for m in moves), sum(m.stds > 1 for m in moves)


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
                moves.append(Move(diff / max(spread, 1e-12), budget, method, metric,
                                  100 * mine["mean"], 100 * theirs["mean"], 100 * spread,
                                  diff < 1e-9))
    equal, moved = tally(moves)
    print(f"{len(moves)} means in both ({first} → {second}): {equal} equal, "
          f"{moved} move by more than one seed std")
    for method in dict.fromkeys(m.method for m in moves):  # registry order, as the tables
        mine = [m for m in moves if m.method == method]
        equal, moved = tally(mine)
        print(f"  {method:<12} {equal:4d} of {len(mine)} equal, {moved:3d} move by more than one "
              f"std, the largest by {max(m.stds for m in mine):.2f}")
    print(f"{'moved (std)':>11}  {'budget':>6}  {'method':<12} {'metric':<18} {'A':>6} {'B':>6} "
          f"{'std':>5}")
    for m in sorted(moves, reverse=True)[:top]:
        print(f"{m.stds:11.2f}  {m.budget:>6}  {m.method:<12} {m.metric:<18} {m.mean_a:6.1f} "
              f"{m.mean_b:6.1f} {m.spread:5.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    main(args.first, args.second, args.top)
