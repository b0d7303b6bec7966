"""Split-half reproducibility of a configuration ranking: would other seeds pick the same order?

The seeds are split into two disjoint halves; each half ranks the configurations by their
mean and ``rho`` is the Spearman correlation of the two rankings. Two further numbers:

- **The Spearman-Brown correction** (Spearman 1910, Brown 1910, Br. J. Psychol. 3): a ranking
  from all 2h seeds is more reliable than one from h. From the half-K correlation r, the
  reliability of the full ranking is 2r / (1 + r). A negative r gives 0: halves that disagree
  project no reliability (the formula would leave [-1, 1]).
- **A bootstrap interval over seeds** (``stats.bootstrap``, percentile interval): ``RESAMPLES``
  times, each half's seeds are drawn with replacement from that half and rho is recomputed; the
  2.5% and 97.5% quantiles are the 95% interval. Resampling within each half keeps the halves
  disjoint: a seed drawn into both would make them agree by construction. It needs two seeds
  per half (K >= 4); the RNG seed is fixed (``SEED``), so the same table always gives the same
  interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

from simtune.stats.bootstrap import RESAMPLES, SEED, percentile_interval, spearman_columns
from simtune.stats.paired import NOISE_HINT, _finite, format_interval


@dataclass(frozen=True)
class SplitHalf:
    """Spearman correlation of configuration rankings from two disjoint halves of the seeds.

    ``rho`` is None when it is undefined (fewer than 2 configurations with both halves, or one
    half ranks every configuration equal); ``reliability`` is then None too. ``low``/``high``
    bound rho's 95% bootstrap interval; None with one seed per half (K < 4) or when no resample
    was defined.
    """

    rho: float | None
    n_configs: int  # configurations that have every replicate of both halves
    half_size: int  # replicates per half: floor(K / 2); with K odd the last one is unused
    reliability: float | None = None  # Spearman-Brown: of the ranking from all 2 * half_size replicates
    low: float | None = None  # 95% bootstrap interval of rho over seeds
    high: float | None = None
    resamples: int = 0  # bootstrap resamples drawn (0: none, so no interval)

    @property
    def reliability_low(self) -> float | None:
        return None if self.low is None else spearman_brown(self.low)

    @property
    def reliability_high(self) -> float | None:
        return None if self.high is None else spearman_brown(self.high)


def spearman_brown(r: float) -> float:
    """Reliability of a ranking from twice the seeds, from the split-half correlation r: 2r / (1 + r).

    A negative r gives 0 (the halves disagree: no reliability to project).
    """
    return 0.0 if r <= 0.0 else 2.0 * r / (1.0 + r)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None if either side is constant.

    Raises:
        ValueError: the sequences differ in length or hold a NaN/inf.
    """
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, but got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    rx = _scipy_stats.rankdata(_finite(x, "x"))
    ry = _scipy_stats.rankdata(_finite(y, "y"))
    mx, my = float(rx.mean()), float(ry.mean())
    sxy = math.fsum((p - mx) * (q - my) for p, q in zip(rx, ry, strict=True))
    sxx = math.fsum((p - mx) ** 2 for p in rx)
    syy = math.fsum((q - my) ** 2 for q in ry)
    if sxx == 0.0 or syy == 0.0:
        return None
    return sxy / math.sqrt(sxx * syy)


def split_half(replicates: Mapping[str, Sequence[float | None]]) -> SplitHalf:
    """Split-half reproducibility of a ranking of configurations.

    Args:
        replicates: configuration key -> its values by replicate index (index k = seed base + k;
            None for a replicate that did not finish). K is the longest sequence.

    The first floor(K/2) replicates form half A, the next floor(K/2) half B; each half ranks the
    configurations by their mean and the result is the Spearman correlation of the two rankings,
    with its Spearman-Brown reliability and (K >= 4) its bootstrap interval (module docstring).
    Configurations missing a replicate of either half are left out.
    """
    k = max((len(v) for v in replicates.values()), default=0)
    h = k // 2
    complete = [[float(v) for v in values[: 2 * h] if v is not None] for values in replicates.values()]
    table = [row for row in complete if h > 0 and len(row) == 2 * h]  # (n_configs, 2h)
    means_a = [math.fsum(row[:h]) / h for row in table]
    means_b = [math.fsum(row[h:]) / h for row in table]
    rho = spearman(means_a, means_b) if len(table) >= 2 else None
    if rho is None:
        return SplitHalf(rho=None, n_configs=len(table), half_size=h)
    low, high, drawn = _bootstrap(np.array(table), h)
    return SplitHalf(rho=rho, n_configs=len(table), half_size=h, reliability=spearman_brown(rho),
                     low=low, high=high, resamples=drawn)


def _bootstrap(table: np.ndarray, h: int) -> tuple[float | None, float | None, int]:
    """rho's percentile interval over seeds resampled within each half; ``table`` is (n_configs, 2h)."""
    if h < 2:
        return None, None, 0
    rng = np.random.default_rng(SEED)
    pick_a = rng.integers(0, h, size=(RESAMPLES, h))  # (B, h) seeds of half A
    pick_b = rng.integers(h, 2 * h, size=(RESAMPLES, h))  # (B, h) seeds of half B
    # (B,) rho per resample; NaN where a half ranks every configuration equal
    rhos = spearman_columns(table[:, pick_a].mean(axis=2), table[:, pick_b].mean(axis=2))
    interval = percentile_interval(rhos)
    return (None, None, RESAMPLES) if interval is None else (*interval, RESAMPLES)


def split_half_line(result: SplitHalf, *, digits: int = 2) -> str:
    """One line on the split-half reproducibility of a ranking, for tables and reports."""
    if result.half_size == 0:
        return f"Ranking reproducibility: unknown with a single replicate; {NOISE_HINT}"
    if result.rho is None and result.n_configs < 2:
        return (
            f"Ranking reproducibility: undefined: {result.n_configs} configuration(s) have all of "
            f"replicates 0-{2 * result.half_size - 1}; it needs two or more"
        )
    if result.rho is None:
        return "Ranking reproducibility: undefined: one half of the replicates ranks all configurations equal"
    h = result.half_size
    line = (
        f"Ranking reproducibility: Spearman {format_interval(result.rho, result.low, result.high, digits=digits)} "
        f"between the configuration rankings from replicates {_indices(0, h - 1)} and from replicates "
        f"{_indices(h, 2 * h - 1)} ({result.n_configs} configurations; 1 = same order, 0 = unrelated, "
        f"-1 = reversed)"
    )
    if result.reliability is not None:
        reliability = format_interval(result.reliability, result.reliability_low, result.reliability_high,
                                      digits=digits)
        line += f"; Spearman-Brown reliability of the ranking from {2 * h} replicates {reliability}"
    if result.low is not None:
        return line + f"; [ ] = 95% bootstrap interval over seeds ({result.resamples} resamples within each half)"
    if h < 2:
        return line + "; no bootstrap interval with one replicate per half (K >= 4 gives one)"
    return line + "; no bootstrap interval: every resample ranked all configurations equal"


def _indices(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


