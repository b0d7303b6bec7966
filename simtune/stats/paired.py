"""Paired seeds: spreads, paired differences with 95% intervals, p-values, verdict lines.

The definitions are the package's (``simtune.stats``): a difference is *beyond noise* iff its
95% Student-t interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats

CONFIDENCE = 0.95  # two-sided level of every interval simtune prints
ALPHA = 1.0 - CONFIDENCE  # the level of every test: "beyond noise" iff p < ALPHA


@dataclass(frozen=True)
class Spread:
    """Mean and sample std of n replicate values; ``std`` is None when n < 2."""

    n: int
    mean: float
    std: float | None


@dataclass(frozen=True)
class PairedDifference:
    """mean(a_i - b_i) over n pairs with its 95% t-interval half-width (None when n < 2)."""

    n: int
    mean: float
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def beyond_noise(self) -> bool | None:
        """True iff the 95% interval excludes 0; None when the noise is unknown (n < 2)."""
        if self.low is None or self.high is None:
            return None
        return self.low > 0.0 or self.high < 0.0


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample standard deviation (ddof = 1) of ``values``.

    Raises:
        ValueError: ``values`` is empty or holds a NaN/inf.
    """
    xs = _finite(values, "values")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return Spread(n=n, mean=mean, std=None)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return Spread(n=n, mean=mean, std=math.sqrt(var))


def format_spread(s: Spread | None, *, digits: int = 2, with_n: bool = False) -> str:
    """``"24.10 ± 0.85"`` (``"24.10"`` for n = 1, ``"-"`` for no value); ``with_n`` adds ``" (n = 3)"``."""
    if s is None:
        return "-"
    text = f"{s.mean:.{digits}f}" if s.std is None else f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"
    return f"{text} (n = {s.n})" if with_n else text


def format_interval(value: float, low: float | None, high: float | None, *, digits: int = 2,
                    signed: bool = False) -> str:
    """``"22.41 [21.90, 22.95]"``: a value and its interval (``signed``: ``"+0.41 [-0.12, +0.95]"``).

    Just the value when either bound is unknown (None); every number with ``digits`` decimals.
    """
    spec = f"{'+' if signed else ''}.{digits}f"
    text = format(value, spec)
    if low is None or high is None:
        return text
    return f"{text} [{format(low, spec)}, {format(high, spec)}]"


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value: t_{(1 + confidence) / 2, df}; 12.706 for df = 1 at 95%."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, but got df={df}")
    return float(_scipy_stats.t.ppf((1.0 + confidence) / 2.0, df))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> PairedDifference:
    """Mean of the pairwise differences a_i - b_i and the half-width of its 95% t-interval.

    ``a[i]`` and ``b[i]`` must come from the same seed (common random numbers).

    Raises:
        ValueError: the sequences differ in length, are empty, or hold a NaN/inf.
    """
    d = _differences(a, b)
    if d.std is None:
        return PairedDifference(n=d.n, mean=d.mean, half_width=None)
    return PairedDifference(n=d.n, mean=d.mean, half_width=t_quantile(d.n - 1) * d.std / math.sqrt(d.n))


def unpaired_difference(sa: Spread, sb: Spread) -> PairedDifference:
    """mean(a) - mean(b) of two spreads over *different* seeds, with the half-width of Welch's 95% t-interval.

    For two samples that share no seed (a sweep's seeds against fresh ones): the standard error
    is sqrt(s_a^2 / n_a + s_b^2 / n_b), with Welch-Satterthwaite degrees of freedom (as
    ``scipy.stats.ttest_ind(equal_var=False)``). ``n`` is n_a + n_b; the half-width is None when
    either side has one value.
    """
    n, mean = sa.n + sb.n, sa.mean - sb.mean
    if sa.std is None or sb.std is None:
        return PairedDifference(n=n, mean=mean, half_width=None)
    va, vb = sa.std ** 2 / sa.n, sb.std ** 2 / sb.n
    if va + vb == 0.0:
        return PairedDifference(n=n, mean=mean, half_width=0.0)
    df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))
    t = float(_scipy_stats.t.ppf((1.0 + CONFIDENCE) / 2.0, df))
    return PairedDifference(n=n, mean=mean, half_width=t * math.sqrt(va + vb))


def _differences(a: Sequence[float], b: Sequence[float]) -> Spread:
    """The spread of the pairwise differences a_i - b_i (std None with one pair)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, but got {len(a)} and {len(b)}")
    return spread([x - y for x, y in zip(_finite(a, "a"), _finite(b, "b"), strict=True)])


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test of mean(a_i - b_i) = 0; None with fewer than 2 pairs.

    Identical pairs (every difference the same) give p = 0 when the difference is not 0 and
    p = 1 when it is.
    Raises:
        ValueError: the sequences differ in length, are empty, or hold a NaN/inf.
    """
    return _p_value(a, b, shift=0.0, two_sided=True)


def margin_p_value(a: Sequence[float], b: Sequence[float], margin: float = 0.0) -> float | None:
    """p-value against "b is at least ``margin`` better than a", paired over seeds, on the two-sided scale.

    The paired t statistic of mean(a_i - b_i) + margin, one-sided and doubled (capped at 1), so
    that with ``margin`` 0 and a ahead on average it is ``paired_p_value``'s. A small value says
    b cannot beat a by ``margin``: b is worse (margin 0) or not worth the difference (margin > 0).
    Identical differences give 0 when mean + margin > 0, else 1. None with fewer than 2 pairs.
    Raises:
        ValueError: the sequences differ in length, are empty, or hold a NaN/inf.
    """
    return _p_value(a, b, shift=margin, two_sided=False)


def _p_value(a: Sequence[float], b: Sequence[float], *, shift: float, two_sided: bool) -> float | None:
    """The paired t-test's p-value for mean(a_i - b_i) + shift, two-sided or one-sided (upper) doubled."""
    d = _differences(a, b)
    if d.std is None:
        return None
    mean = d.mean + shift
    if not d.std:  # every difference the same
        return 0.0 if (mean != 0.0 if two_sided else mean > 0.0) else 1.0
    t = mean / (d.std / math.sqrt(d.n))
    return min(1.0, float(2.0 * _scipy_stats.t.sf(abs(t) if two_sided else t, d.n - 1)))


def holm_rejections(p_values: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise error ``alpha``.

    The i-th smallest p-value (i = 0, 1, ...) is compared with alpha / (m - i); testing stops at
    the first that is not below it (Holm 1979, Scand. J. Statist. 6:65-70).
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, index in enumerate(order):
        if p_values[index] >= alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected


def verdict(
    diff: PairedDifference,
    *,
    first: str = "best",
    second: str = "runner-up",
    unit: str = "mIoU",
    digits: int = 2,
) -> str:
    """The one-line verdict on ``first - second``.

    Only a difference beyond noise (95% interval excludes 0) is said to win or lose:
    ``Verdict: best beats runner-up by 1.80 ± 0.90 mIoU (paired, n = 3): beyond noise`` ("trails"
    when negative). Within noise the line only says which mean is ahead:
    ``Verdict: best leads runner-up by 0.18 ± 0.20 mIoU (paired, n = 10): within noise`` ("is
    behind" when negative; "best and runner-up differ by 0.00" when the mean is exactly 0), and
    with n = 1 the same words say the noise is unknown and how to measure it. "± h" is the
    half-width of the 95% interval.
    """
    size = f"{abs(diff.mean):.{digits}f}"
    if diff.mean == 0.0:
        lead = f"{first} and {second} differ by {size}"
    elif diff.beyond_noise:
        lead = f"{first} {'beats' if diff.mean > 0 else 'trails'} {second} by {size}"
    else:
        lead = f"{first} {'leads' if diff.mean > 0 else 'is behind'} {second} by {size}"
    if diff.half_width is None:
        return f"Verdict: {lead} {unit} in a single run each: noise unknown; {NOISE_HINT}"
    word = "beyond noise" if diff.beyond_noise else "within noise"
    return f"Verdict: {lead} ± {diff.half_width:.{digits}f} {unit} (paired, n = {diff.n}): {word}"


NOISE_HINT = (
    "measure it with 'replicates: 3' in the space file or --replicates 3 "
    "(every configuration then runs with the same 3 seeds)"
)


def _finite(values: Sequence[float], name: str) -> list[float]:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{name}: need at least one value, but got none")
    bad = [x for x in xs if not math.isfinite(x)]
    if bad:
        raise ValueError(f"{name}: values must be finite, but got {bad[0]}")
    return xs
