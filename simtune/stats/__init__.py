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
  With n = 1 pair the interval (and so the noise) is unknown. A verdict says "beats"/"trails"
  only beyond noise, "leads"/"is behind" within it.
- Configurations that ran different seeds are compared by their seed-adjusted estimates
  (``additive``), never by raw means over unlike seed sets.
- Whether a sweep's configurations differ at all is one test over all of them (Friedman's,
  ``surface``), never best against worst: picking the extremes inflates their difference.

Modules: ``additive`` (seed-adjusted configuration estimates over unlike seed sets), ``paired``
(spreads, paired intervals and p-values, Holm, verdicts), ``surface`` (do the configurations
differ?), ``bootstrap`` (seeds resampled with replacement, column-wise Spearman,
percentile intervals), ``reproducibility`` (split-half Spearman, Spearman-Brown).
Import from ``simtune.stats``.
"""

from simtune.stats.additive import AdditiveFit, Estimate, fit_additive, format_estimate
from simtune.stats.bootstrap import RESAMPLES as BOOTSTRAP_RESAMPLES
from simtune.stats.bootstrap import SEED as BOOTSTRAP_SEED
from simtune.stats.bootstrap import percentile_interval, seed_weights, spearman_columns
from simtune.stats.paired import (ALPHA, CONFIDENCE, NOISE_HINT, PairedDifference, Spread, format_interval,
                                  format_spread, holm_rejections, margin_p_value, paired_difference, paired_p_value,
                                  spread, t_quantile, unpaired_difference, verdict)
from simtune.stats.reproducibility import SplitHalf, spearman, spearman_brown, split_half, split_half_line
from simtune.stats.surface import SurfaceTest, surface_line, surface_test

__all__ = ["ALPHA", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE", "NOISE_HINT", "AdditiveFit", "Estimate",
           "PairedDifference", "SplitHalf", "Spread", "SurfaceTest", "fit_additive", "format_estimate",
           "format_interval", "format_spread", "holm_rejections", "margin_p_value", "paired_difference",
           "paired_p_value", "percentile_interval", "seed_weights", "spearman", "spearman_brown", "spearman_columns",
           "split_half", "split_half_line", "spread", "surface_line", "surface_test", "t_quantile",
           "unpaired_difference", "verdict"]
