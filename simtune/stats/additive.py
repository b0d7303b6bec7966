"""Seed-adjusted configuration estimates: one number per configuration, comparable across seed sets.

A sweep's configurations rarely share one seed set: racing eliminates some after two seeds,
ASHA stops others, a failed replicate leaves a hole. Their raw means are then over different
seeds, and the seed is the largest source of noise (on the recorded lambda_ci grid its effect
has sd 2.06 mIoU against 0.79 for the configuration × seed residual): a configuration that ran
two lucky seeds looks better than one that ran ten. The additive model

    y[c, s] = mu + alpha[c] + beta[s] + e[c, s],   e ~ N(0, sigma^2) independent,

fitted by least squares over every finished (configuration, seed) cell, estimates each seed's
effect ``beta[s]`` from every configuration that ran it and removes it. A configuration's
*estimate* is ``mu + alpha[c]`` with the seed effects constrained to sum to 0 over the seeds
the sweep ran: its expected value at the average seed of the sweep. On a complete table (every
configuration on every seed) the estimate is exactly the raw mean; with holes it is the raw
mean corrected by how lucky its seeds were for the other configurations.

The standard error is sigma_hat · sqrt(x' (X'X)^-1 x), with sigma_hat^2 the residual mean square
over ``N - C - S + 1`` degrees of freedom (N cells, C configurations, S seeds): the error of
the *comparison* between configurations given these seeds (the seed effects are fixed, not
sampled; what a fresh seed would add is the seed sd, which is estimated too). With 0 residual
degrees of freedom (e.g. every configuration on one seed) the noise is unknown and the errors
are None. Configurations are connected through shared seeds; one whose seeds no other
configuration ran cannot be seed-adjusted and keeps its raw mean, with ``adjusted = False``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A configuration's seed-adjusted estimate (metric units) and its standard error (None = unknown)."""

    value: float
    se: float | None
    n: int  # seeds it ran
    raw_mean: float
    adjusted: bool  # False: its seeds share no configuration with the rest; value is the raw mean


@dataclass(frozen=True)
class AdditiveFit:
    """The fitted seed + configuration model of a sweep."""

    estimates: dict[str, Estimate]
    seed_effects: dict[int, float]  # beta[s], summing to 0 over the seeds
    residual_sd: float | None  # sigma_hat; None with 0 residual degrees of freedom
    seed_sd: float | None  # sd of the estimated seed effects (None with fewer than 2 seeds)
    df: int  # residual degrees of freedom


def format_estimate(value: float | None, se: float | None, *, digits: int = 2) -> str:
    """``"21.35 ± 0.36"`` (estimate ± standard error), ``"21.35"`` when the error is unknown, ``"-"`` for none."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")


def fit_additive(cells: Mapping[str, Mapping[int, float]]) -> AdditiveFit:
    """Fit the additive model to configuration -> seed -> value (non-finite values are left out).

    Configurations with no finite value get no estimate. Raises nothing on a degenerate design:
    a configuration disconnected from the rest keeps its raw mean (``adjusted = False``).
    """
    table = {c: {int(s): float(v) for s, v in by_seed.items() if math.isfinite(v)} for c, by_seed in cells.items()}
    table = {c: by_seed for c, by_seed in table.items() if by_seed}
    main = _largest_connected(table)
    connected = {c: table[c] for c in main}
    fit = _least_squares(connected) if connected else AdditiveFit({}, {}, None, None, 0)
    estimates = dict(fit.estimates)
    for c, by_seed in table.items():
        if c not in estimates:
            values = list(by_seed.values())
            estimates[c] = Estimate(_mean(values), None, len(values), _mean(values), False)
    return AdditiveFit({c: estimates[c] for c in table}, fit.seed_effects, fit.residual_sd, fit.seed_sd, fit.df)


def _least_squares(table: dict[str, dict[int, float]]) -> AdditiveFit:
    """The fit over one connected set of configurations and seeds (sum-to-zero seed effects)."""
    configs, seeds = list(table), sorted({s for by_seed in table.values() for s in by_seed})
    rows = [(ci, seeds.index(s), v) for ci, c in enumerate(configs) for s, v in sorted(table[c].items())]
    n_c, n_s = len(configs), len(seeds)
    # columns: one per configuration (mu + alpha[c]), then S - 1 seed contrasts (beta[last] = -sum of the others)
    x = np.zeros((len(rows), n_c + n_s - 1))
    y = np.array([v for _, _, v in rows])
    for i, (ci, si, _) in enumerate(rows):
        x[i, ci] = 1.0
        if si < n_s - 1:
            x[i, n_c + si] = 1.0
        else:
            x[i, n_c:] = -1.0
    gram_inv = np.linalg.pinv(x.T @ x)
    coef = gram_inv @ x.T @ y
    df = len(rows) - x.shape[1]
    residual_sd = float(np.sqrt(np.sum((y - x @ coef) ** 2) / df)) if df > 0 else None
    betas = [*map(float, coef[n_c:]), -float(np.sum(coef[n_c:]))] if n_s > 1 else [0.0]
    estimates = {c: Estimate(float(coef[ci]), _se(residual_sd, gram_inv[ci, ci]), len(table[c]),
                             _mean(list(table[c].values())), True) for ci, c in enumerate(configs)}
    seed_sd = float(np.std(betas, ddof=1)) if n_s > 1 else None
    return AdditiveFit(estimates, dict(zip(seeds, betas)), residual_sd, seed_sd, max(df, 0))


def _se(residual_sd: float | None, variance_factor: float) -> float | None:
    return None if residual_sd is None else residual_sd * math.sqrt(max(float(variance_factor), 0.0))


def _largest_connected(table: dict[str, dict[int, float]]) -> list[str]:
    """The configurations of the largest group linked through shared seeds (the first group on ties)."""
    groups: list[tuple[set[str], set[int]]] = []
    for c, by_seed in table.items():
        seeds = set(by_seed)
        linked = [g for g in groups if g[1] & seeds]
        merged = ({c}.union(*(g[0] for g in linked)), seeds.union(*(g[1] for g in linked)))
        groups = [g for g in groups if g not in linked] + [merged]
    if not groups:
        return []
    largest = max(groups, key=lambda g: len(g[0]))
    return [c for c in table if c in largest[0]]


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)
