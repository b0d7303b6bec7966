"""Can a label-free validator be trusted to select? Rank agreement and regret, with seed intervals.

Input is a ``Grid``: configurations x seeds (paired: every configuration ran every seed), each
run a sequence of evaluations (dicts of metrics, in training order; the last is the run's
final model). Nothing here reads files. Units: mIoU in points (0-100); correlations in [-1, 1].

Two selection problems, each judged on ``report/miou`` (the report split, never used to pick):

- **Configuration selection** (the last evaluation of every run): a validator picks the
  configuration with the highest mean over seeds; so does the oracle (``val/miou``, the
  selection split, which needs target labels). Spearman and Kendall (tau-b) are taken between
  the configuration means of the validator and of report mIoU. ``pick - oracle`` and ``pick -
  default`` are report mIoU (mean over seeds) of the validator's pick minus that of the
  oracle's pick and of the *no-selection baseline*: the default configuration at its last
  evaluation.
- **Checkpoint selection** (within each run, across its evaluations): per run, Spearman and
  Kendall between the validator and report mIoU over the evaluations, and report mIoU of the
  evaluation the validator picks minus that of the oracle's pick and of the last evaluation
  (no selection); each averaged over runs.

**Cross-fitted.** A pick scored on the seeds it was picked on is flattered by their luck (the
seed moves val and report mIoU together). ``pick - default, cross-fitted`` picks on a random
half of the seeds and scores on the other half, averaged over ``CROSS_FIT_SPLITS`` halvings
(fixed RNG seed), inside every resample too; the verdict is on it.

**Intervals.** 95% percentile bootstrap over seeds (``stats.bootstrap``): each resample draws S
seeds with replacement, the same seeds for every configuration (paired), and *repeats the selection*
inside the resample from label-free numbers only. The point value is the statistic on the
seeds as they are. A validator **beats the no-selection baseline beyond noise** only when the
interval of ``pick - default`` lies above 0. With one seed there is no interval (noise unknown).

**Consensus.** ``consensus_metric`` scores a candidate by the mean, over member validators, of
its rank among the candidates; members are chosen by the caller (on the selection split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from simtune.stats import percentile_interval, spearman_columns
from simtune.keys import REPORT_METRIC, SELECTION_METRIC

CROSS_FIT_SPLITS = 200  # random halvings of the seeds behind a cross-fitted pick
CROSS_FIT_SEED = 0
ORACLE = SELECTION_METRIC  # the selection split: needs target labels
TRUTH = REPORT_METRIC  # the report split: only ever scores a pick
CONSENSUS = "consensus"

Evaluation = Mapping[str, float]
RunKey = tuple[str, int]  # (configuration label, seed)


@dataclass(frozen=True)
class Grid:
    """Runs of paired configurations x seeds; ``default`` is the no-selection configuration (or None)."""

    configs: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: Mapping[RunKey, Sequence[Evaluation]]
    default: str | None


@dataclass(frozen=True)
class Estimate:
    """A statistic on the seeds as they are, with its 95% bootstrap interval (None: undefined / unknown)."""

    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class StudyRow:
    """One validator: configuration selection (last evaluations) and checkpoint selection (within runs)."""

    metric: str
    pick: str | None  # the configuration it picks on all seeds
    spearman: Estimate
    kendall: Estimate
    pick_report: Estimate  # report mIoU of its pick, mean over seeds
    vs_oracle: Estimate  # pick - oracle's pick, report mIoU
    vs_default: Estimate  # pick - default configuration (last evaluation), report mIoU
    vs_default_selection: Estimate  # the same scored on val/miou: what a consensus may be chosen on
    vs_default_crossfit: Estimate  # pick - default, picked on half the seeds and scored on the other half
    spearman_within: Estimate
    kendall_within: Estimate
    within_vs_oracle: Estimate  # evaluation it picks - oracle's evaluation, report mIoU, mean over runs
    within_vs_last: Estimate  # evaluation it picks - last evaluation, report mIoU, mean over runs
    runs_within: int  # runs with >= 2 evaluations of the metric


def make_grid(runs: Mapping[RunKey, Sequence[Evaluation]], default: str | None = None) -> Grid:
    """A ``Grid`` of the configurations in ``runs`` over the seeds *every* configuration ran.

    Raises:
        ValueError: no seed is shared by all configurations, or ``default`` is not one of them.
    """
    configs = tuple(dict.fromkeys(config for config, _ in runs))
    shared = set.intersection(*({s for c, s in runs if c == config} for config in configs)) if configs else set()
    if not shared:
        raise ValueError(f"no seed is shared by all {len(configs)} configurations: nothing to pair")
    if default is not None and default not in configs:
        raise ValueError(f"default configuration {default!r} is not among {list(configs)}")
    seeds = tuple(sorted(shared))
    return Grid(configs, seeds, {(c, s): runs[(c, s)] for c in configs for s in seeds}, default)


def final_table(grid: Grid, metric: str) -> np.ndarray | None:
    """``(C, S)`` of ``metric`` at each run's last evaluation; None unless finite for every run."""
    values = np.array([[_value(grid.runs[(c, s)][-1], metric) for s in grid.seeds] for c in grid.configs])
    return values if np.isfinite(values).all() else None


def consensus_metric(grid: Grid, members: Sequence[str], weights: np.ndarray) -> np.ndarray:
    """``(C, B)`` consensus score: mean over ``members`` of each configuration's rank (1 = worst) by mean."""
    ranks = [scipy_stats.rankdata(_means(table, weights), axis=0) for m in members
             if (table := final_table(grid, m)) is not None]
    return np.mean(ranks, axis=0)


def study_row(grid: Grid, metric: str, weights: np.ndarray, members: Sequence[str] = ()) -> StudyRow | None:
    """The row of ``metric`` (or of ``CONSENSUS`` over ``members``); None when a final value is missing."""
    report, selection = _required(grid, TRUTH), _required(grid, ORACLE)
    if metric != CONSENSUS and final_table(grid, metric) is None:
        return None
    score = _score(grid, metric, members, weights)
    truth, oracle = _means(report, weights), _means(selection, weights)
    picks, oracle_picks = score.argmax(axis=0), oracle.argmax(axis=0)
    columns = np.arange(score.shape[1])
    picked = truth[picks, columns]
    default = grid.configs.index(grid.default) if grid.default is not None else None
    within = _within(grid, metric, members, weights)
    return StudyRow(
        metric=metric, pick=grid.configs[int(picks[0])],
        spearman=_estimate(spearman_columns(score, truth)), kendall=_estimate(_kendall_columns(score, truth)),
        pick_report=_estimate(picked), vs_oracle=_estimate(picked - truth[oracle_picks, columns]),
        vs_default=_estimate(None if default is None else picked - truth[default]),
        vs_default_selection=_estimate(None if default is None else oracle[picks, columns] - oracle[default]),
        vs_default_crossfit=_estimate(None if default is None else _cross_fitted(grid, metric, members, weights,
                                                                                  report, default)),
        spearman_within=_estimate(within[0]), kendall_within=_estimate(within[1]),
        within_vs_oracle=_estimate(within[2]), within_vs_last=_estimate(within[3]), runs_within=within[4])


@dataclass(frozen=True)
class Baselines:
    """The three numbers every pick is compared with: report mIoU (mean over seeds) with intervals."""

    oracle_pick: str
    oracle_report: Estimate
    default: str | None
    default_report: Estimate
    seeds: int


def baselines(grid: Grid, weights: np.ndarray) -> Baselines:
    """The oracle's pick and the default configuration, each with its report mIoU."""
    report, selection = _required(grid, TRUTH), _required(grid, ORACLE)
    truth, oracle = _means(report, weights), _means(selection, weights)
    picks = oracle.argmax(axis=0)
    default = grid.configs.index(grid.default) if grid.default is not None else None
    return Baselines(grid.configs[int(picks[0])], _estimate(truth[picks, np.arange(truth.shape[1])]),
                     grid.default, _estimate(None if default is None else truth[default]), len(grid.seeds))


def beats_baseline(row: StudyRow, *, on_selection: bool = False) -> bool:
    """The 95% interval of ``pick - default`` lies above 0 (report split, or the selection split)."""
    estimate = row.vs_default_selection if on_selection else row.vs_default
    return estimate.low is not None and estimate.low > 0.0


def verdict(row: StudyRow) -> str:
    """One phrase on the cross-fitted ``pick - default`` (report split) for the docs and the report."""
    if row.vs_default.value is None:
        return "no default configuration in the grid: not judged"
    estimate = row.vs_default_crossfit  # undefined with one seed: no half to score on
    if estimate.value is None or estimate.low is None or estimate.high is None:
        return "noise unknown (one seed): not judged"
    if estimate.low > 0.0:
        return "beats the no-selection baseline beyond noise"
    if estimate.high < 0.0:
        return "worse than the no-selection baseline beyond noise"
    return "does not beat the no-selection baseline beyond noise"


# ----------------------------------------------------------------------------- arithmetic


def _value(evaluation: Evaluation, metric: str) -> float:
    value = evaluation.get(metric)
    return math.nan if value is None else float(value)


def _required(grid: Grid, metric: str) -> np.ndarray:
    """``final_table`` of a metric every run must have; ``ValueError`` naming it otherwise."""
    table = final_table(grid, metric)
    if table is None:
        raise ValueError(f"not every run's last evaluation has a finite {metric}")
    return table


def _means(table: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(C, S)`` values -> ``(C, B)`` means over each resample's seeds (NaN for a resample with none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return table @ weights.T / weights.sum(axis=1)


def _score(grid: Grid, metric: str, members: Sequence[str], weights: np.ndarray) -> np.ndarray:
    """``(C, B)`` what ``metric`` (or ``CONSENSUS`` over ``members``) ranks configurations by."""
    if metric == CONSENSUS:
        return consensus_metric(grid, members, weights)
    table = final_table(grid, metric)
    assert table is not None
    return _means(table, weights)


def _cross_fitted(grid: Grid, metric: str, members: Sequence[str], weights: np.ndarray, report: np.ndarray,
                  default: int) -> np.ndarray:
    """``(B,)`` report mIoU of the pick made on a random half of each resample's seeds, minus the default's,
    both over the other half; the mean over ``CROSS_FIT_SPLITS`` halvings (NaN where no halving had seeds
    on both sides)."""
    rng = np.random.default_rng(CROSS_FIT_SEED)
    n_seeds, columns = weights.shape[1], np.arange(weights.shape[0])
    total, count = np.zeros(weights.shape[0]), np.zeros(weights.shape[0])
    for _ in range(CROSS_FIT_SPLITS):
        picked_on = np.zeros(n_seeds, dtype=bool)
        picked_on[rng.permutation(n_seeds)[: n_seeds // 2]] = True
        pick_weights, score_weights = weights * picked_on, weights * ~picked_on
        both = (pick_weights.sum(axis=1) > 0) & (score_weights.sum(axis=1) > 0)
        picks = np.nan_to_num(_score(grid, metric, members, pick_weights), nan=-np.inf).argmax(axis=0)
        truth = _means(report, score_weights)
        total += np.where(both, truth[picks, columns] - truth[default], 0.0)
        count += both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


def _estimate(columns: np.ndarray | None) -> Estimate:
    """Column 0 is the point value; the rest are resamples (NaN = undefined in that resample)."""
    if columns is None or not math.isfinite(float(columns[0])):
        return Estimate(None)
    interval = percentile_interval(columns[1:])
    return Estimate(float(columns[0])) if interval is None else Estimate(float(columns[0]), *interval)


def _kendall_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b column by column: (concordant - discordant) / sqrt(untied-x pairs * untied-y pairs)."""
    i, j = np.triu_indices(x.shape[0], k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])  # (pairs, B)
    denom = np.sqrt((sx != 0).sum(axis=0) * (sy != 0).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (sx * sy).sum(axis=0) / np.where(denom > 0, denom, 1.0), np.nan)


def _run_scores(evaluations: Sequence[Evaluation], metric: str, members: Sequence[str]) -> np.ndarray:
    """``(T,)`` the metric at each evaluation, or for ``CONSENSUS`` the mean within-run rank of ``members``."""
    if metric != CONSENSUS:
        return np.array([_value(e, metric) for e in evaluations])
    ranks = [scipy_stats.rankdata(values) for m in members
             if np.isfinite(values := np.array([_value(e, m) for e in evaluations])).all()]
    return np.mean(ranks, axis=0) if ranks else np.full(len(evaluations), math.nan)


def _run_within(evaluations: Sequence[Evaluation], metric: str, members: Sequence[str]) -> np.ndarray:
    """``(4,)`` one run's Spearman, Kendall, pick - oracle pick, pick - last (report mIoU); NaN if < 2 evaluations."""
    score = _run_scores(evaluations, metric, members)
    truth = np.array([_value(e, TRUTH) for e in evaluations])
    oracle = np.array([_value(e, ORACLE) for e in evaluations])
    keep = np.isfinite(score) & np.isfinite(truth) & np.isfinite(oracle)
    if keep.sum() < 2 or not keep[-1]:
        return np.full(4, math.nan)
    score, truth, oracle = score[keep], truth[keep], oracle[keep]
    pick = truth[int(score.argmax())]
    return np.array([spearman_columns(score[:, None], truth[:, None])[0],
                     _kendall_columns(score[:, None], truth[:, None])[0],
                     pick - truth[int(oracle.argmax())], pick - truth[-1]])


def _within(grid: Grid, metric: str, members: Sequence[str], weights: np.ndarray
            ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None, int]:
    """Per resample, the four within-run statistics averaged over runs (configurations x drawn seeds)."""
    per_run = np.array([[_run_within(grid.runs[(c, s)], metric, members) for s in grid.seeds]
                        for c in grid.configs])  # (C, S, 4)
    usable = int(np.isfinite(per_run[..., 2]).sum())
    if usable == 0:
        return None, None, None, None, 0
    columns = []
    for k in range(4):
        values = per_run[..., k]
        known = np.isfinite(values).astype(float)  # (C, S)
        total = np.nan_to_num(values).sum(axis=0) @ weights.T  # (B,)
        count = known.sum(axis=0) @ weights.T
        with np.errstate(invalid="ignore", divide="ignore"):
            columns.append(np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan))
    return columns[0], columns[1], columns[2], columns[3], usable
