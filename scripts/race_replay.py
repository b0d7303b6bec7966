"""Replay the racing rule on a recorded grid: does racing make the full grid's decision for less?

    python scripts/race_replay.py docs/data/lambda_ci_grid_10seeds.csv --orders 1000

The table (``scripts/export_grid.py``) holds every configuration (``lambda_ci``) at every seed.
The reference decision is the full grid's: the configuration with the best mean of the metric
over all seeds (the "10-seed winner"), and the set of configurations whose paired 95% interval
against it contains 0 (as good as the winner within the seed noise). For each of ``--orders``
random orders of the seeds, the racing rule (``simtune.search.racing``) races the grid in that
order (once per ``--min-difference`` δ, the racing indifference zone), and fixed-K selection
takes the best mean over the order's first K seeds. Printed: how often each picks the 10-seed
winner, how often one within its interval, and the mean fraction of the full grid's trials it
spent.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

from simtune.search.racing import Racing, leader, replay
from simtune.stats import paired_difference
from simtune.tables import text_table


def read_table(path: Path, metric: str, key: str) -> dict[str, list[float]]:
    """Configuration -> its metric by seed, seeds in ascending order (every configuration has every seed)."""
    by_config: dict[str, dict[int, float]] = {}
    with open(path) as handle:
        for row in csv.DictReader(handle):
            by_config.setdefault(f"{key} {row[key]}", {})[int(row["seed"])] = float(row[metric])
    seeds = sorted(next(iter(by_config.values())))
    if any(sorted(values) != seeds for values in by_config.values()):
        raise SystemExit(f"{path}: every configuration needs the same seeds")
    return {c: [values[s] for s in seeds] for c, values in by_config.items()}


def acceptable(table: dict[str, list[float]], winner: str) -> set[str]:
    """The winner and every configuration whose paired interval against it contains 0."""
    out = {winner}
    for c, values in table.items():
        diff = paired_difference(table[winner], values)
        if c != winner and not diff.beyond_noise:
            out.add(c)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--metric", default="val/miou", help="the selection metric (default val/miou)")
    parser.add_argument("--key", default="lambda_ci", help="the column naming a configuration")
    parser.add_argument("--orders", type=int, default=1000, help="random seed orders (default 1000)")
    parser.add_argument("--min-replicates", type=int, default=2)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--min-difference", type=float, nargs="+", default=[0.0],
                        help="racing.min_difference δ to replay, one racing row each (default 0)")
    parser.add_argument("--fixed", type=int, nargs="*", default=[2, 3, 5], help="fixed K to compare (default 2 3 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random orders")
    args = parser.parse_args(argv)
    table = read_table(args.table, args.metric, args.key)
    seeds = len(next(iter(table.values())))
    races = {f"racing, δ = {d:g}": Racing(args.min_replicates, seeds, args.confidence, d)
             for d in args.min_difference}
    winner = leader(table, list(table), seeds)
    good = acceptable(table, winner)
    rng = random.Random(args.seed)
    tally = {**{name: [0, 0, 0.0] for name in races}, **{f"fixed K = {k}": [0, 0, 0.0] for k in args.fixed}}
    full = len(table) * seeds
    for _ in range(args.orders):
        order = rng.sample(range(seeds), seeds)
        shuffled = {c: [values[i] for i in order] for c, values in table.items()}
        picks = {name: (outcome.winner, outcome.trials)
                 for name, outcome in ((name, replay(shuffled, racing)) for name, racing in races.items())}
        picks.update({f"fixed K = {k}": (leader(shuffled, list(table), k), k * len(table)) for k in args.fixed})
        for name, (pick, trials) in picks.items():
            tally[name][0] += pick == winner
            tally[name][1] += pick in good
            tally[name][2] += trials / full
    rows = [["rule", "picks the 10-seed winner", "picks one within its interval", "trials spent (of the full grid)"]]
    rows += [[name, f"{hit / args.orders:.1%}", f"{near / args.orders:.1%}", f"{spent / args.orders:.1%}"]
             for name, (hit, near, spent) in tally.items()]
    print(f"{args.table}: {len(table)} configurations x {seeds} seeds on {args.metric}; the {seeds}-seed winner "
          f"is {winner}; within its interval: {', '.join(sorted(good))}")
    print(f"racing: min_replicates {args.min_replicates}, max_replicates {seeds}, confidence {args.confidence}, "
          f"min_difference δ in metric units; "
          f"{args.orders} random seed orders (seed {args.seed})")
    print(text_table(rows, right=(1, 2, 3)))
    print("command: " + " ".join(["python scripts/race_replay.py", *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
