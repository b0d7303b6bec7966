"""The bootstrap over seeds: resampled seeds, column-wise rank correlations, percentile intervals.

Every seed interval simtune states that is not a t-interval comes from here (Efron and
Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13, percentile interval):
``RESAMPLES`` times, seeds are drawn with replacement and the statistic is recomputed; the
2.5% and 97.5% quantiles of the resampled values are the 95% interval. The RNG seed is fixed
(``SEED``), so the same table always gives the same interval.

Statistics are computed for every resample at once: a table of ``(items, B)`` holds one
column per resample, and ``spearman_columns`` correlates two such tables column by column.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _scipy_stats

from simtune.stats.paired import CONFIDENCE

RESAMPLES = 2000  # resamples of the seeds behind each interval
SEED = 0  # numpy seed of the resampling: an interval is a function of the table


def seed_weights(seeds: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(1 + resamples, seeds)`` multiplicities of each seed; row 0 = every seed once (the point value).

    Row b > 0 counts how often each seed was drawn in resample b (``seeds`` draws with
    replacement); the same row applies to every configuration, so comparisons stay paired.
    With one seed there is nothing to resample: only row 0.
    """
    identity = np.ones((1, seeds))
    if seeds < 2:
        return identity
    draws = np.random.default_rng(seed).integers(0, seeds, size=(resamples, seeds))
    counts = np.stack([np.bincount(row, minlength=seeds) for row in draws]).astype(float)
    return np.concatenate([identity, counts])


def spearman_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho between ``x`` and ``y`` (both ``(n, B)``), column by column: ``(B,)``.

    Ties get their average rank; a column where either side ranks every item equal is NaN.
    """
    return _pearson_columns(_scipy_stats.rankdata(x, axis=0), _scipy_stats.rankdata(y, axis=0))


def _pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    dx, dy = x - x.mean(axis=0), y - y.mean(axis=0)
    denom = np.sqrt((dx**2).sum(axis=0) * (dy**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dx * dy).sum(axis=0) / np.where(denom > 0, denom, 1.0), np.nan)


def percentile_interval(draws: np.ndarray) -> tuple[float, float] | None:
    """The 95% percentile interval (``CONFIDENCE``) of the finite resampled values in ``draws``.

    None when fewer than two are finite (a resample where the statistic is undefined is NaN).
    """
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return None
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)
