"""The one rule that ranks a sweep's trials and configurations, and the verdict on its winner.

**The ranking rule.** A trial is judged by the selection metric (``val/miou``, the oracle,
unless the space names another ``val/`` metric or a label-free ``select/<name>``) at its *last*
evaluation, never its best-ever one: the last evaluation is the model a trial hands on, and the
best of many noisy evaluations would flatter it. Candidates are the trials that ended without
failing and evaluated the metric. Trials trained to the end rank first; trials a scheduler
(ASHA) stopped early rank after all of them, among themselves by the metric: a stopped trial
saw fewer iterations, so its number is not comparable with a finished one, but a sweep whose
every trial was stopped still has a best; among stopped ones, a later rung ranks first. Ties
go to the earlier trial id. ``summary.json`` and
``best_config.yaml`` (the runner), the MLflow "best" tags (``tracking.sweep``), ``simtune
report`` and ``retrain --best`` all rank with ``rank``.

**Configurations.** With replicates (``replicates: K``, see ``search.replicates``) the
ranked items are configurations: the trials that share their swept values, one per seed.
A configuration is judged by the mean of the selection metric over *all* its seeds, the
same K for every configuration, never over the seeds that happened to survive. It is
complete when every seed trained to the end; it ranks as stopped early when every seed
ended, some stopped by the scheduler; and it is not ranked when a seed failed, has not
ended, or is missing (a mean over the rest would be chosen by outcome). ASHA over
configurations (``search.halving``) stops a configuration as a whole at a rung; such a
configuration is judged by its mean at that rung over its K seeds, the number the rung
compared (``RungStop``), not by where each replicate happened to end. A seed run twice (a
grid pass repeated, a searcher proposing a configuration again) counts once, with its
earliest trial that trained to the end, else its earliest stopped one. Configurations are
then ranked by ``rank`` exactly as trials are (``rank_configs``), by their *seed-adjusted
estimate* (``seed_adjusted``, ``stats.additive``): configurations a race eliminated ran fewer
seeds than the finalists, and the seed moves the metric more than most configurations do, so
their raw means are not compared side by side. With the same seeds everywhere the estimate is
the raw mean; without replicates every configuration is one trial and the two rankings agree.
Best and runner-up are compared
seed by seed (``compare``) and the verdict line says whether the difference is beyond the
noise (``simtune.stats``). The split-half reproducibility counts the configurations that
were not stopped early, all of whose seeds trained to the end (``reproducibility``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from simtune.schema import direction_sign
from simtune.search.replicates import config_key
from simtune.stats import (Estimate, PairedDifference, SplitHalf, Spread, fit_additive, paired_difference, split_half,
                           split_half_line, spread, verdict)

T = TypeVar("T")


# ----------------------------------------------------------------------------- the ranking rule


@dataclass(frozen=True)
class Standing:
    """What the ranking rule needs to know of one trial."""

    value: float | None  # the selection metric at the trial's last evaluation
    completed: bool  # trained to the end of its last stage
    stopped_early: bool = False  # ended by the scheduler before the end (not a failure)
    reached: float = math.inf  # the iteration ``value`` is at when a rung stopped it (later rungs rank first)


def rank(items: Sequence[T], standing: Callable[[T], Standing], mode: str = "max") -> list[T]:
    """The candidates among ``items`` (given in trial-id order), best first, by the rule above."""
    sign = direction_sign(mode)
    scored = [(item, standing(item)) for item in items]
    usable = [(item, s) for item, s in scored if (s.completed or s.stopped_early) and s.value is not None
              and math.isfinite(s.value)]
    usable.sort(key=lambda pair: (pair[1].completed, pair[1].reached, sign * float(pair[1].value)),  # type: ignore[arg-type]
                reverse=True)
    return [item for item, _ in usable]


# ----------------------------------------------------------------------------- configurations (replicates)


@dataclass(frozen=True)
class Replicate:
    """One trial as a replicate of its configuration: its seed, its standing and its final metrics."""

    trial_id: str
    seed: int
    standing: Standing
    final: dict[str, float]


@dataclass(frozen=True)
class RungStop:
    """A configuration that ASHA over configurations stopped as a whole at a rung."""

    iteration: float  # the rung's milestone
    metric: str  # what the rung compared (the sweep's selection metric)
    values: dict[int, float]  # seed -> that metric at the rung, for every seed of the configuration


@dataclass(frozen=True)
class ConfigResult:
    """One configuration (a set of swept values) over its replicates.

    ``replicates`` are the ones its statistics count, one per seed (see the module docstring):
    every seed's, or none when a seed failed, has not ended or is missing. ``completed``: all
    of them trained to the end. ``stop``: the rung a scheduler stopped it at as a whole, whose
    values then stand for the selection metric. ``trial_ids`` lists every trial of it.
    """

    params: dict[str, Any]
    replicates: tuple[Replicate, ...]
    trial_ids: tuple[str, ...]
    completed: bool
    stop: RungStop | None = None
    estimate: Estimate | None = None  # seed-adjusted (``seed_adjusted``); None until ranked

    @property
    def n(self) -> int:
        return len(self.replicates)

    @property
    def stopped_early(self) -> bool:
        """A scheduler ended it (or one of its counted replicates) before the end."""
        return self.stop is not None or any(r.standing.stopped_early and not r.standing.completed
                                            for r in self.replicates)

    def by_seed(self, metric: str) -> dict[int, float]:
        """Seed -> the metric at that replicate's last evaluation, or at the rung that stopped the
        configuration (only that rung's metric is known there)."""
        if self.stop is not None:
            return dict(self.stop.values) if metric == self.stop.metric else {}
        return {r.seed: r.final[metric] for r in self.replicates
                if metric in r.final and math.isfinite(r.final[metric])}

    def spread(self, metric: str) -> Spread | None:
        """Mean and std over the counted replicates; None when none has ``metric``."""
        values = list(self.by_seed(metric).values())
        return spread(values) if values else None

    def standing(self, metric: str) -> Standing:
        """Judged by its seed-adjusted estimate when it has one, else by its mean over its seeds."""
        s = self.spread(metric)
        value = self.estimate.value if self.estimate is not None else None if s is None else s.mean
        return Standing(value, self.completed, not self.completed,
                        math.inf if self.stop is None else self.stop.iteration)


def group_configs(items: Sequence[T], params: Callable[[T], dict[str, Any]],
                  replicate: Callable[[T], Replicate], seeds: int | None = None) -> list[ConfigResult]:
    """``items`` (in trial-id order) grouped by their swept values, in order of first appearance.

    ``seeds``: how many seeds each configuration has (K); a configuration with fewer is not
    counted. None: the seeds its own trials have (a racing sweep's configurations differ).
    """
    groups: dict[str, tuple[dict[str, Any], list[Replicate]]] = {}
    for item in items:
        values = params(item)
        groups.setdefault(config_key(values), (values, []))[1].append(replicate(item))
    return [_config(values, reps, seeds) for values, reps in groups.values()]


def _config(params: dict[str, Any], replicates: list[Replicate], seeds: int | None) -> ConfigResult:
    chosen: dict[int, Replicate | None] = {}
    for seed in sorted({r.seed for r in replicates}):
        usable = [r for r in replicates if r.seed == seed and _usable(r.standing)]
        chosen[seed] = next((r for r in usable if r.standing.completed), usable[0] if usable else None)
    counted = [r for r in chosen.values() if r is not None]
    if len(counted) < len(chosen) or len(counted) < (seeds or 0):
        counted = []  # a seed failed, has not ended, or is missing: no mean over the others
    return ConfigResult(dict(params), tuple(counted), tuple(r.trial_id for r in replicates),
                        bool(counted) and all(r.standing.completed for r in counted))


def _usable(s: Standing) -> bool:
    return (s.completed or s.stopped_early) and s.value is not None and math.isfinite(s.value)


def stopped_at_rungs(configs: Sequence[ConfigResult], stops: dict[str, RungStop]) -> list[ConfigResult]:
    """``configs`` with those in ``stops`` (config key -> rung) judged at the rung that stopped them:
    not completed, whatever their replicates reached later. One with no counted seed stays so."""
    return [dataclasses.replace(c, completed=False, stop=stop)
            if c.replicates and (stop := stops.get(config_key(c.params))) is not None else c for c in configs]


def rank_configs(configs: Sequence[ConfigResult], metric: str, mode: str = "max") -> list[ConfigResult]:
    """Configurations best first by the one rule (``rank``) applied to their seed-adjusted estimates."""
    return rank(seed_adjusted(configs, metric), lambda c: c.standing(metric), mode)


def seed_adjusted(configs: Sequence[ConfigResult], metric: str) -> list[ConfigResult]:
    """``configs`` with their seed-adjusted estimates of ``metric`` (``stats.fit_additive``).

    One fit over the configurations judged at the end of training (finalists and those a race
    eliminated), and one per rung over those ASHA stopped there: values at different iterations
    are never put in one model. On a complete table an estimate equals the raw mean.
    """
    def rung(c: ConfigResult) -> float | None:
        return None if c.stop is None else c.stop.iteration

    groups: dict[float | None, list[ConfigResult]] = {}
    for c in configs:
        groups.setdefault(rung(c), []).append(c)
    estimates: dict[tuple[float | None, str], Estimate] = {}
    for at, members in groups.items():
        fit = fit_additive({config_key(c.params): c.by_seed(metric) for c in members})
        estimates.update({(at, key): e for key, e in fit.estimates.items()})
    return [dataclasses.replace(c, estimate=estimates.get((rung(c), config_key(c.params)))) for c in configs]


def compare(best: ConfigResult, other: ConfigResult, metric: str) -> PairedDifference | None:
    """``best - other`` on ``metric`` over the seeds both have (paired); None when they share none."""
    a, b = best.by_seed(metric), other.by_seed(metric)
    seeds = sorted(set(a) & set(b))
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds]) if seeds else None


def reproducibility(configs: Sequence[ConfigResult], metric: str) -> SplitHalf:
    """Split-half Spearman of the ranking of the configurations not stopped early (each trained to
    the end on every seed); replicate k = the k-th smallest seed seen."""
    counted = [c for c in configs if not c.stopped_early]
    seeds = sorted({s for c in counted for s in c.by_seed(metric)})
    table = {config_key(c.params): [c.by_seed(metric).get(s) for s in seeds]
             for c in counted}
    return split_half(table)


def reproducibility_line(configs: Sequence[ConfigResult], metric: str) -> str:
    """The reproducibility line, saying how many configurations it left out as stopped early."""
    line = split_half_line(reproducibility(configs, metric))
    stopped = sum(c.stopped_early for c in configs)
    return line + (f"; {stopped} configuration(s) stopped early by the scheduler not counted" if stopped else "")


@dataclass(frozen=True)
class Verdict:
    """Best against runner-up: the paired difference (None when there is nothing to pair) and its line."""

    line: str
    difference: PairedDifference | None


def ranking_verdict(ranked: Sequence[ConfigResult], metric: str) -> Verdict:
    """The verdict line on a configuration ranking (best first), paired over shared seeds."""
    if len(ranked) < 2:
        return Verdict(f"Verdict: {len(ranked)} configuration(s) ranked; no runner-up to compare", None)
    runner_up = ranked[1]
    if runner_up.stopped_early and not ranked[0].stopped_early:  # ranked after every complete one
        where = f" at iteration {runner_up.stop.iteration:g}" if runner_up.stop is not None else ""
        return Verdict(f"Verdict: only the best trained to the end; the runner-up was stopped early{where}, so "
                       f"they are not compared at equal length", None)
    diff = compare(ranked[0], runner_up, metric)
    if diff is None:
        return Verdict("Verdict: best and runner-up share no seed; they cannot be compared paired", None)
    return Verdict(verdict(diff, unit=metric_unit(metric)), diff)


def metric_unit(metric: str) -> str:
    """How a verdict names the metric's unit: mIoU for ``*/miou``, IoU for a class IoU, else its name."""
    if metric.endswith("/miou"):
        return "mIoU"
    return "IoU" if "/iou/" in metric else metric
