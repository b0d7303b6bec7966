"""Split-half reproducibility of a configuration ranking."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats

from simtune.stats.paired import NOISE_HINT, _finite


@dataclass(frozen=True)
class SplitHalf:
    """Spearman correlation of configuration rankings from two disjoint halves of the seeds.

    ``rho`` is None when it is undefined (fewer than 2 configurations with both halves, or one
    half ranks every configuration equal).
    """

    rho: float | None
    n_configs: int  # configurations that have every replicate of both halves
    half_size: int  # replicates per half: floor(K / 2); with K odd the last one is unused


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


