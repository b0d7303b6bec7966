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

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats

CONFIDENCE = 0.95  # two-sided level of every interval simtune prints


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


@dataclass(frozen=True)
class SplitHalf:
    """Spearman correlation of configuration rankings from two disjoint halves of the seeds.

    ``rho`` is None when it is undefined (fewer than 2 configurations with both halves, or one
    half ranks every configuration equal).
    """

    rho: float | None
    n_configs: int  # configurations that have every replicate of both halves
    half_size: int  # replicates per half: floor(K / 2); with K odd the last one is unused


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
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, but got {len(a)} and {len(b)}")
    d = spread([x - y for x, y in zip(_finite(a, "a"), _finite(b, "b"), strict=True)])
    if d.std is None:
        return PairedDifference(n=d.n, mean=d.mean, half_width=None)
    return PairedDifference(n=d.n, mean=d.mean, half_width=t_quantile(d.n - 1) * d.std / math.sqrt(d.n))


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test of mean(a_i - b_i) = 0; None with fewer than 2 pairs.

    Identical pairs (every difference the same) give p = 0 when the difference is not 0 and
    p = 1 when it is.
    Raises:
        ValueError: the sequences differ in length, are empty, or hold a NaN/inf.
    """
    diff = paired_difference(a, b)
    if diff.half_width is None:
        return None
    d = spread([x - y for x, y in zip(a, b, strict=True)])
    if not d.std:
        return 0.0 if d.mean != 0.0 else 1.0
    t = d.mean / (d.std / math.sqrt(d.n))
    return float(2.0 * _scipy_stats.t.sf(abs(t), d.n - 1))


def holm_rejections(p_values: Sequence[float], alpha: float = 1.0 - CONFIDENCE) -> list[bool]:
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

    ``Verdict: best beats runner-up by 1.80 ± 0.90 mIoU (paired, n = 3): beyond noise``; "± h" is
    the half-width of the 95% interval. With n = 1 the line says the noise is unknown and how to
    measure it.
    """
    verb = "beats" if diff.mean >= 0 else "trails"
    size = f"{abs(diff.mean):.{digits}f}"
    if diff.half_width is None:
        return (
            f"Verdict: {first} {verb} {second} by {size} {unit} in a single run each: "
            f"noise unknown; {NOISE_HINT}"
        )
    word = "beyond noise" if diff.beyond_noise else "within noise"
    return (
        f"Verdict: {first} {verb} {second} by {size} ± {diff.half_width:.{digits}f} {unit} "
        f"(paired, n = {diff.n}): {word}"
    )


NOISE_HINT = (
    "measure it with 'replicates: 3' in the space file or --replicates 3 "
    "(every configuration then runs with the same 3 seeds)"
)


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
    configurations by their mean and the result is the Spearman correlation of the two rankings.
    Configurations missing a replicate of either half are left out.
    """
    k = max((len(v) for v in replicates.values()), default=0)
    h = k // 2
    means_a: list[float] = []
    means_b: list[float] = []
    for values in replicates.values():
        half_a, half_b = list(values[:h]), list(values[h : 2 * h])
        if h == 0 or len(half_b) < h or any(v is None for v in half_a + half_b):
            continue
        means_a.append(math.fsum(v for v in half_a if v is not None) / h)
        means_b.append(math.fsum(v for v in half_b if v is not None) / h)
    rho = spearman(means_a, means_b) if len(means_a) >= 2 else None
    return SplitHalf(rho=rho, n_configs=len(means_a), half_size=h)


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
    return (
        f"Ranking reproducibility: Spearman {result.rho:.{digits}f} between the configuration rankings "
        f"from replicates {_indices(0, h - 1)} and from replicates {_indices(h, 2 * h - 1)} "
        f"({result.n_configs} configurations; 1 = same order, 0 = unrelated, -1 = reversed)"
    )


def _indices(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _finite(values: Sequence[float], name: str) -> list[float]:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{name}: need at least one value, but got none")
    bad = [x for x in xs if not math.isfinite(x)]
    if bad:
        raise ValueError(f"{name}: values must be finite, but got {bad[0]}")
    return xs
