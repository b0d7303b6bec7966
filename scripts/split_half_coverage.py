"""How often the split-half bootstrap interval holds the quantity it estimates, by K.

    python scripts/split_half_coverage.py docs/data/lambda_ci_grid_10seeds.csv --ks 4 6 10 --draws 1000

The additive model fitted to the recorded grid (``stats.fit_additive``: its estimates as the
truth, its seed and residual sd as the noise) generates sweeps of K seeds. The quantity is the
expected split-half Spearman rho of a K-seed sweep (the mean of rho over ``--truth-draws``
sweeps); the coverage is the share of ``--draws`` sweeps whose 95% percentile interval
(``stats.split_half``, 2,000 resamples within each half) contains it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from simtune.keys import SELECTION_METRIC
from simtune.stats import fit_additive, spearman, split_half

sys.path.insert(0, str(Path(__file__).parent))
from race_replay import read_table  # noqa: E402  (a sibling script)


def sweeps(truth: list[float], seed_sd: float, residual_sd: float, k: int, draws: int,
           rng: np.random.Generator) -> np.ndarray:
    """(draws, configurations, k) values: truth + a shared seed effect + a residual."""
    beta = rng.normal(0.0, seed_sd, (draws, 1, k))
    return np.array(truth)[None, :, None] + beta + rng.normal(0.0, residual_sd, (draws, len(truth), k))


def expected_rho(values: np.ndarray) -> float:
    h = values.shape[2] // 2
    rhos = [spearman(list(v[:, :h].mean(axis=1)), list(v[:, h:2 * h].mean(axis=1))) for v in values]
    return float(np.mean([r for r in rhos if r is not None]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 6, 10])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--truth-draws", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    table = read_table(args.table, SELECTION_METRIC, "lambda_ci")
    fit = fit_additive({c: dict(enumerate(v)) for c, v in table.items()})
    assert fit.seed_sd is not None and fit.residual_sd is not None
    truth = [e.value for e in fit.estimates.values()]
    print(f"{len(truth)} configurations, seed sd {fit.seed_sd:.2f}, residual sd {fit.residual_sd:.2f}")
    for k in args.ks:
        rho = expected_rho(sweeps(truth, fit.seed_sd, fit.residual_sd, k, args.truth_draws, rng))
        hits = counted = 0
        widths = 0.0
        for values in sweeps(truth, fit.seed_sd, fit.residual_sd, k, args.draws, rng):
            result = split_half({str(i): list(row) for i, row in enumerate(values)})
            if result.low is None or result.high is None:
                continue
            counted += 1
            hits += result.low <= rho <= result.high
            widths += result.high - result.low
        share = hits / counted
        half = 1.96 * math.sqrt(share * (1 - share) / counted)
        print(f"K = {k}: expected rho {rho:.3f}; the 95% interval holds it in {share:.1%} "
              f"[{share - half:.1%}, {share + half:.1%}] of {counted} sweeps; mean width {widths / counted:.2f}")
    given = argv if argv is not None else sys.argv[1:]
    print("command: " + " ".join(["python scripts/split_half_coverage.py", *given]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
