"""Paired differences between the configurations of a recorded table, on all its seeds or some of them.

    python scripts/paired_table.py docs/data/lambda_ci_race_10seeds.csv --seeds 4-9

Prints, for every pair of configurations (``--key`` values), mean(a - b) over the chosen seeds
with its 95% Student-t interval (``stats.paired_difference``) and whether it excludes 0. Use
``--seeds`` to judge a race's winner on seeds the race did not run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from simtune.keys import SELECTION_METRIC
from simtune.stats import paired_difference

sys.path.insert(0, str(Path(__file__).parent))
from race_replay import read_table  # noqa: E402  (a sibling script)


def seed_range(text: str) -> range:
    """``"4-9"`` -> 4 .. 9 (seed indices of the table's ascending seeds)."""
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--metric", default=SELECTION_METRIC)
    parser.add_argument("--key", default="lambda_ci")
    parser.add_argument("--seeds", type=seed_range, default=None, help="seed indices, e.g. 4-9 (default: all)")
    args = parser.parse_args(argv)
    table = read_table(args.table, args.metric, args.key)
    seeds = list(args.seeds or range(len(next(iter(table.values())))))
    means = {c: sum(table[c][s] for s in seeds) / len(seeds) for c in table}
    print(f"{args.table}: {args.metric} over seed indices {seeds[0]}-{seeds[-1]} ({len(seeds)} seeds)")
    for a, b in itertools.combinations(sorted(table, key=means.__getitem__, reverse=True), 2):
        diff = paired_difference([table[a][s] for s in seeds], [table[b][s] for s in seeds])
        noise = "beyond noise" if diff.beyond_noise else "within noise"
        width = "?" if diff.half_width is None else f"{diff.half_width:.2f}"
        print(f"{a} - {b}: {diff.mean:+.2f} ± {width} ({noise})")
    print("command: " + " ".join(["python scripts/paired_table.py", *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
