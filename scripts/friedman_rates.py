"""How often Friedman's test calls identical configurations different: its false-alarm rate by seeds.

    python scripts/friedman_rates.py --configs 9 --seeds 2 3 5 --draws 1000000

Under "every configuration has the same mean" each seed ranks the configurations by a uniformly
random permutation, whatever the noise's distribution (ties aside), so the rate depends only on
the table's shape. The statistic is the one ``scipy.stats.friedmanchisquare`` computes without
ties, Q = 12 / (K c (c + 1)) · Σ_j R_j² − 3 K (c + 1) over rank sums R_j, with its chi-square
p-value (c − 1 df) as ``simtune.stats.surface_test`` uses it; ``--draws`` random rank tables per
K give the rate with a binomial 95% interval.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy import stats


def false_alarm_rate(configs: int, seeds: int, draws: int, rng: np.random.Generator,
                     alpha: float = 0.05, chunk: int = 100_000) -> float:
    """The share of ``draws`` random rank tables whose Friedman p-value is below ``alpha``."""
    critical = float(stats.chi2.isf(alpha, configs - 1))
    hits = 0
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        ranks = np.argsort(rng.random((n, seeds, configs)), axis=2).argsort(axis=2) + 1
        sums = ranks.sum(axis=1, dtype=np.float64)
        q = 12.0 / (seeds * configs * (configs + 1)) * (sums ** 2).sum(axis=1) - 3.0 * seeds * (configs + 1)
        hits += int(np.count_nonzero(q > critical))
    return hits / draws


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 5])
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for k in args.seeds:
        rate = false_alarm_rate(args.configs, k, args.draws, rng)
        half = 1.96 * math.sqrt(max(rate * (1 - rate), 1.0 / args.draws) / args.draws)
        print(f"{args.configs} identical configurations x {k} seeds: Friedman p < 0.05 in {rate:.3%} "
              f"[{max(rate - half, 0.0):.3%}, {rate + half:.3%}] of {args.draws:,} draws")
    print("command: " + " ".join(["python scripts/friedman_rates.py", *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
