"""Do a sweep's configurations differ at all, beyond the seed noise? One test over all of them.

Comparing the best configuration with the worst (or the best with any one other, picked after
looking) is not a test: on nine identical configurations the paired t-interval of best − worst
excludes 0 in 12-33% of sweeps (K = 2-5 seeds), because picking the extremes inflates their
difference. This module tests every configuration at once:

- **Three or more configurations: Friedman's test** (M. Friedman 1937, "The use of ranks to
  avoid the assumption of normality implicit in the analysis of variance", JASA 32:675-701),
  through ``scipy.stats.friedmanchisquare`` (its chi-square approximation, ties corrected).
  Each seed is a block: within a seed the configurations are ranked, so whatever a seed does
  to every configuration alike (the shared part of paired seeds) cancels, and on identical
  configurations the ranks are exchangeable whatever the noise's distribution.
- **Two configurations: the paired t-test** (``paired_p_value``), the test behind the verdict's
  interval; Friedman's test needs three.

Why not a repeated-measures ANOVA over the same table: it is exact for normal noise of equal
size in every configuration, but one configuration 3-5 times noisier than the others (an
unstable setting) makes it say "beyond noise" in 10-18% of sweeps whose means are equal;
Friedman's test stays near 5% there (at most 5.2% in that simulation, K = 2-10). The price is
power with few seeds: the chi-square approximation is conservative (simulated on nine
identical configurations: 0.1% at K = 2, 1.6% at K = 3, 3.5% at K = 5, ``tests/test_stats.py``);
one configuration 3 noise-sds better is found in about 65% of sweeps at K = 5, in 12% at K = 3
and practically never at K = 2: only two seeds ordering all nine configurations identically
reach p < 0.05 (``min_p`` is the smallest p a table of that shape can give; the line says when
it is 0.05 or more).

The table is configurations × seeds and every block must be complete: the configurations that
lack a seed are left out, or the seeds that some configuration lacks, whichever keeps more values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats

from simtune.stats.paired import ALPHA, NOISE_HINT, paired_p_value, spread

FRIEDMAN = "Friedman"
PAIRED_T = "paired t"


@dataclass(frozen=True)
class SurfaceTest:
    """One test of "every configuration has the same mean" over a configurations × seeds table.

    ``test`` is ``"Friedman"`` (chi-square statistic, df = n_configs - 1) or ``"paired t"``
    (t statistic, df = n_seeds - 1), or None when nothing can be tested (fewer than two complete
    configurations or fewer than two seeds); then ``statistic`` and ``p_value`` are None.
    """

    test: str | None
    statistic: float | None
    p_value: float | None
    n_configs: int  # configurations with a value for every seed (the ones tested)
    n_seeds: int  # seeds (blocks)
    min_p: float | None = None  # Friedman: the smallest p any data could give with this table's shape
    left_out: tuple[str, ...] = ()  # configurations not tested: they lack a seed the others have

    @property
    def beyond_noise(self) -> bool | None:
        """True iff p < 0.05 (``ALPHA``); None when nothing was tested."""
        return None if self.p_value is None else self.p_value < ALPHA


def surface_test(table: Mapping[str, Sequence[float | None]]) -> SurfaceTest:
    """Friedman's test (two configurations: the paired t-test) over configurations blocked by seed.

    Args:
        table: configuration key -> its values by seed, the same seed at the same index for
            every configuration (None for a seed it lacks); gaps are removed as the module says.

    Raises:
        ValueError: a value is NaN or infinite.
    """
    kept, k = _complete_blocks(table)
    columns, left_out = list(kept.values()), tuple(key for key in table if key not in kept)
    if len(columns) < 2 or k < 2:
        return SurfaceTest(None, None, None, len(columns), k, left_out=left_out)
    if len(columns) == 2:
        p = paired_p_value(columns[0], columns[1])
        return SurfaceTest(PAIRED_T, _t_statistic(columns[0], columns[1]), p, 2, k, left_out=left_out)
    c = len(columns)
    min_p = float(_scipy_stats.chi2.sf(k * (c - 1), c - 1))  # every seed ranks the configurations alike
    if all(len({col[s] for col in columns}) == 1 for s in range(k)):  # every seed ties them all: no evidence
        return SurfaceTest(FRIEDMAN, 0.0, 1.0, c, k, min_p, left_out)
    result = _scipy_stats.friedmanchisquare(*columns)
    return SurfaceTest(FRIEDMAN, float(result.statistic), float(result.pvalue), c, k, min_p, left_out)


def surface_line(result: SurfaceTest) -> str:
    """``the configurations differ beyond seed noise (Friedman chi2 = 23.41, p = 0.003; ...)``.

    Or ``no configuration differs beyond seed noise (...)``, with a note when the test could
    not have said otherwise, or why nothing was tested.
    """
    if result.test is None:
        if result.n_seeds < 2:
            return f"the noise is unknown with a single replicate; {NOISE_HINT}"
        return (f"not tested: {result.n_configs} configuration(s) have a value for each of the "
                f"{result.n_seeds} seeds; the test needs two or more")
    name = "Friedman chi2" if result.test == FRIEDMAN else "paired t"
    stat = "-" if result.statistic is None else f"{result.statistic:.2f}"
    facts = f"{name} = {stat}, {_p(result.p_value)}; {result.n_configs} configurations × {result.n_seeds} seeds"
    if result.beyond_noise:
        return f"the configurations differ beyond seed noise ({facts})"
    line = f"no configuration differs beyond seed noise ({facts})"
    if result.min_p is not None and result.min_p >= ALPHA:
        line += (f"; with {result.n_seeds} seeds and {result.n_configs} configurations this test cannot "
                 f"reach p < {ALPHA:.2f} whatever the results: more replicates are needed")
    return line


def _complete_blocks(table: Mapping[str, Sequence[float | None]]) -> tuple[dict[str, list[float]], int]:
    """The configurations × seeds table without gaps (key -> values), and its number of seeds.

    Either the configurations that lack a seed are left out or the seeds that some configuration
    lacks are, whichever keeps more values (the first on a tie: it keeps every seed).
    """
    rows = {key: list(v) for key, v in table.items()}
    k = max((len(v) for v in rows.values()), default=0)
    full = {key: [float(x) for x in v if x is not None] for key, v in rows.items() if len(v) == k and None not in v}
    shared = [s for s in range(k) if all(s < len(v) and v[s] is not None for v in rows.values())]
    if len(rows) * len(shared) > len(full) * k:
        full, k = {key: [float(x) for s in shared if (x := v[s]) is not None] for key, v in rows.items()}, len(shared)
    if any(not math.isfinite(x) for column in full.values() for x in column):
        raise ValueError("surface_test: values must be finite")
    return full, k


def _t_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """mean(d) / (std(d) / sqrt(n)) of d = a - b; 0 for identical pairs, ±inf for a constant non-zero d."""
    d = spread([x - y for x, y in zip(a, b, strict=True)])
    if d.mean == 0.0:
        return 0.0
    if not d.std:
        return math.copysign(math.inf, d.mean)
    return d.mean / (d.std / math.sqrt(d.n))


def _p(p: float | None) -> str:
    if p is None:
        return "p unknown"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
