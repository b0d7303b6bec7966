"""Seed noise: spreads, paired differences with 95% intervals, verdicts, ranking reproducibility.

The one home of the statistics simtune states about repeated runs. Every function takes plain
sequences of floats and returns a small frozen dataclass, so sweeps, reports and scripts share
the same arithmetic and the same wording.

Definitions used everywhere:

- ``std`` is the sample standard deviation (``ddof = 1``) over replicates; it is unknown (None)
  for a single value.
- A paired difference between two configurations uses only the replicates (seeds) both have,
  d_i = a_i - b_i. Its 95% interval is mean(d) ± t_{0.975, n-1} · std(d) / sqrt(n) (Student's t,
  two-sided). "± h" in a verdict is that half-width h.
- A difference is *beyond noise* iff its 95% interval excludes 0, otherwise *within noise*.
  With n = 1 pair the interval (and so the noise) is unknown.
"""

from simtune.stats.paired import (ALPHA, CONFIDENCE, NOISE_HINT, PairedDifference, Spread, format_spread,
                                  holm_rejections, paired_difference, paired_p_value, spread, t_quantile, verdict)
from simtune.stats.reproducibility import SplitHalf, spearman, split_half, split_half_line

__all__ = ["ALPHA", "CONFIDENCE", "NOISE_HINT", "PairedDifference", "SplitHalf", "Spread", "format_spread",
           "holm_rejections", "paired_difference", "paired_p_value", "spearman", "split_half", "split_half_line",
           "spread", "t_quantile", "verdict"]
