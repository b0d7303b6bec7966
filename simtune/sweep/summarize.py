"""A sweep's ``Summary`` (``simtune.results.summary``) from the experiment state Tune saved.

Read from Tune's state, so an interrupted sweep shows its RUNNING and PENDING trials as such.
A trial whose loss became non-finite ended normally in Tune (it would only diverge again if
retried) and is marked ERROR here, from its run directory's ``failure.json``.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.results.ranking import (ConfigResult, Replicate, Standing, group_configs,
                                     rank_configs, ranking_verdict, reproducibility, reproducibility_line,
                                     stopped_at_rungs)
from simtune.results.summary import ConfigSummary, Counts, NoiseVerdict, Reproducibility, Summary, TrialSummary
from simtune.results.sweepdir import SweepDir
from simtune.results.trials import demote_eliminated, eliminations, rung_stops
from simtune.search.replicates import config_key, replicate_index
from simtune.search.space import SearchSpace

RESULT_NOISE = ("time_this_iter_s", "time_total_s", "timestamp", "training_iteration", "date", "pid",
                "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name",
                "done", "trial_id", "config", "experiment_tag", "should_checkpoint")


def summarize(space: SearchSpace, sweep_dir: Path) -> Summary:
    """Every trial and every configuration (ranked by the one rule); ``best``, the verdict, the counts.

    A racing sweep's trials come from all its rounds; a configuration the race eliminated ranks
    after those still racing at the end, as a trial stopped early ranks after finished ones.
    With ASHA a configuration it stopped as a whole is judged at that rung (``asha.json``).
    """
    from ray import tune

    folder = SweepDir(sweep_dir)
    trials = sorted((trial_summary(space, sweep_dir, trial) for experiment in (folder.rounds() or [sweep_dir])
                     for trial in tune.ExperimentAnalysis(str(experiment), default_metric=space.metric,
                                                          default_mode=space.mode).trials),
                    key=lambda t: t.trial_id)
    configs = group_configs(trials, lambda t: t.params, lambda t: Replicate(
        t.trial_id, t.seed, Standing(t.metrics.get(space.metric), t.status == "TERMINATED" and not t.stopped_early,
                                     t.stopped_early), t.metrics), seeds=None if space.racing else space.replicates)
    configs = stopped_at_rungs(configs, rung_stops(sweep_dir, space.metric, {t.trial_id: t.seed for t in trials}))
    left = eliminations(sweep_dir)
    configs = demote_eliminated(configs, left)
    ranked = rank_configs(configs, space.metric, space.mode)
    by_id = {t.trial_id: t for t in trials}
    placed = {config_key(r.params) for r in ranked}
    unranked = [c for c in configs if config_key(c.params) not in placed]  # no counted replicate
    return Summary(
        sweep=sweep_dir.name, sweep_dir=str(sweep_dir), space_file=str(space.file), metric=space.metric,
        mode=space.mode, max_iteration=space.scheduler.max_t,
        replicates=space.racing.max_replicates if space.racing else space.replicates,
        counts=_counts(trials, len(configs)),
        best=by_id[ranked[0].replicates[0].trial_id] if ranked else None,
        ranking=[r.trial_id for c in ranked for r in c.replicates],
        configs=[*(_config_summary(c, space.metric, i, left) for i, c in enumerate(ranked, 1)),
                 *(_config_summary(c, space.metric, None, left) for c in unranked)],
        verdict=_verdict(ranked, space.metric), reproducibility=_reproducibility(ranked, space.metric),
        trials=trials)


def _counts(trials: list[TrialSummary], configs: int) -> Counts:
    statuses = dict(Counter(t.status for t in trials))
    return Counts(total=len(trials), finished=statuses.get("TERMINATED", 0), failed=statuses.get("ERROR", 0),
                  stopped_early=sum(t.stopped_early for t in trials),
                  retried=sum(t.failures > 0 and t.status != "ERROR" for t in trials), configs=configs,
                  statuses=statuses)


def _config_summary(c: ConfigResult, metric: str, place: int | None,
                    left: dict[str, dict[str, Any]]) -> ConfigSummary:
    """One configuration: mean and std of the selection metric over its counted replicates."""
    sel = c.spread(metric)
    spreads = {m: None if (s := c.spread(m)) is None else s
               for m in dict.fromkeys((SELECTION_METRIC, REPORT_METRIC)) if m != metric}
    return ConfigSummary(rank=place, params=c.params, n=c.n, seeds=[r.seed for r in c.replicates],
                         mean=None if sel is None else sel.mean, std=None if sel is None else sel.std,
                         trained_to_end=c.completed, trial_ids=list(c.trial_ids), spreads=spreads,
                         stopped_at=None if c.stop is None else c.stop.iteration,
                         eliminated_after=gone["after"] if (gone := left.get(config_key(c.params))) else None,
                         eliminated_reason=gone["reason"] if gone else None,
                         estimate=None if c.estimate is None else c.estimate.value,
                         estimate_se=None if c.estimate is None else c.estimate.se)


def _verdict(ranked: list[ConfigResult], metric: str) -> NoiseVerdict:
    result = ranking_verdict(ranked, metric)
    diff = result.difference
    if diff is None:
        return NoiseVerdict(result.line)
    return NoiseVerdict(result.line, diff.n, diff.mean, diff.half_width, diff.beyond_noise)


def _reproducibility(ranked: list[ConfigResult], metric: str) -> Reproducibility:
    """Over the configurations trained to the end on every seed; the line says how many were stopped."""
    halves = reproducibility(ranked, metric)
    return Reproducibility(reproducibility_line(ranked, metric), halves.rho, halves.n_configs, halves.half_size,
                           halves.reliability, halves.low, halves.high, halves.resamples,
                           stopped=sum(c.stopped_early for c in ranked))


def trial_summary(space: SearchSpace, sweep_dir: Path, trial: Any) -> TrialSummary:
    # A failed trial reports its metric as the worst value (for the searcher): not a measurement.
    metrics = {k: v for k, v in (trial.last_result or {}).items()
               if k not in RESULT_NOISE and not (isinstance(v, float) and not math.isfinite(v))}
    reason = metrics.pop("failure_reason", None)
    metrics.pop("failed", None)
    if trial.status == "ERROR" and reason is None:
        reason = _error_line(trial.get_pickled_error() or trial.get_error())
    iteration = int(metrics.get("iteration", 0))
    run = SweepDir(sweep_dir).run(trial.trial_id)
    diverged = run.failure_reason()
    status = "ERROR" if diverged is not None else trial.status
    return TrialSummary(
        trial_id=trial.trial_id, status=status, params={key: trial.config.get(key) for key in space.params},
        replicate=replicate_index(trial.config), seed=space.config_for(trial.config).seed, metrics=metrics,
        iteration=iteration, stopped_early=status == "TERMINATED" and iteration < space.scheduler.max_t,
        failure_reason=reason or diverged, failures=trial.num_failures,
        starts=run.attempts.read_text().count("\n") if run.attempts.is_file() else 0, run_dir=str(run.root))


def _error_line(error: BaseException | None) -> str:
    """``Type: message`` of the exception a trial raised (Ray wraps it)."""
    if error is None:
        return "unknown error (no error file)"
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"
