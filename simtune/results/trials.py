"""A finished sweep's trials and configurations, read from its run directories.

The ranking itself is ``results.ranking``; this module turns run directories into the items
it ranks.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune.keys import SELECTION_METRIC
from simtune import config
from simtune.results.ranking import (ConfigResult, Replicate, RungStop, Standing,
                                     group_configs, rank, rank_configs, stopped_at_rungs)
from simtune.results.summary import load_summary
from simtune.results.sweepdir import SweepDir
from simtune.rundir import RunDir, read_json
from simtune.schema import DIRECTIONS
from simtune.search.halving import recorded_cuts
from simtune.search.replicates import config_key

# ----------------------------------------------------------------------------- trials from run directories


@dataclass(frozen=True)
class TrialOutcome:
    """One trial as its run directory records it."""

    trial_id: str
    run_dir: Path
    params: dict[str, Any]  # flattened resolved config
    final: dict[str, float]  # last evaluation of the last stage that evaluated ({} if none)
    stage: str | None  # that stage
    finished: bool  # results.json written: every stage ran to its end
    failure: str | None  # failure.json's reason (a diverged trial)
    stopped_early: bool = False  # summary.json says a scheduler stopped it


def load_trials(sweep_dir: Path) -> list[TrialOutcome]:
    """Every trial with a resolved config under ``<sweep_dir>/runs/``, in trial-id order."""
    summary = load_summary(sweep_dir)
    stopped = {t.trial_id for t in summary.trials if t.stopped_early} if summary is not None else set()
    out = []
    for folder in sorted(p for p in SweepDir(sweep_dir).runs.iterdir() if RunDir(p).has_config()):
        run = RunDir(folder)
        last = run.last_evaluation()
        out.append(TrialOutcome(
            trial_id=folder.name, run_dir=folder, params=config.flatten(run.config()),
            final={k: float(v) for k, v in last[1].items() if k != "step"} if last else {},
            stage=last[0] if last else None, finished=run.finished(), failure=run.failure_reason(),
            stopped_early=folder.name in stopped and not run.finished()))
    return out


def selection_rule(sweep_dir: Path) -> tuple[str, str]:
    """(metric, mode) the sweep selected by: its ``summary.json`` if it says, else ``val/miou``, max."""
    summary = load_summary(sweep_dir)
    metric, mode = (summary.metric, summary.mode) if summary is not None else (SELECTION_METRIC, "max")
    if not isinstance(metric, str) or not metric.startswith(("val/", "select/")) or mode not in DIRECTIONS:
        return SELECTION_METRIC, "max"
    return metric, mode


def rank_trials(trials: Sequence[TrialOutcome], metric: str = SELECTION_METRIC,
                mode: str = "max") -> list[TrialOutcome]:
    """``trials`` ranked by the rule (``rank``), best first."""
    return rank(trials, lambda t: _trial_standing(t, metric), mode)


def swept_keys(sweep_dir: Path, trials: Sequence[TrialOutcome]) -> list[str]:
    """The keys a sweep varied: from ``summary.json``, else those that differ between trials (not ``seed``)."""
    summary = load_summary(sweep_dir)
    if summary is not None and summary.trials:
        return list(summary.trials[0].params)
    first = trials[0].params if trials else {}
    return [k for k in first if k != "seed" and len({json.dumps(t.params.get(k)) for t in trials}) > 1]


def load_configs(sweep_dir: Path, trials: Sequence[TrialOutcome], metric: str, mode: str) -> list[ConfigResult]:
    """The sweep's configurations from its run directories, ranked (best first; unranked ones dropped)."""
    keys = swept_keys(sweep_dir, trials)
    configs = group_configs(
        trials, lambda t: {k: t.params.get(k) for k in keys},
        lambda t: Replicate(t.trial_id, int(t.params.get("seed", 0)), _trial_standing(t, metric), dict(t.final)))
    configs = stopped_at_rungs(configs, rung_stops(sweep_dir, metric, {t.trial_id: int(t.params.get("seed", 0))
                                                                        for t in trials}))
    return rank_configs(demote_eliminated(configs, eliminations(sweep_dir)), metric, mode)


def _trial_standing(t: TrialOutcome, metric: str) -> Standing:
    return Standing(t.final.get(metric), t.finished and t.failure is None, t.stopped_early and t.failure is None)


def eliminations(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Configuration key -> how it left the race (``race.json``); {} for a sweep that does not race."""
    record = read_json(SweepDir(sweep_dir).race) or {}
    return {e["config"]: e for r in record.get("rounds", []) for e in r.get("eliminated", [])}


def demote_eliminated(configs: Sequence[ConfigResult], left: dict[str, dict[str, Any]]) -> list[ConfigResult]:
    """``configs`` with the ones a race eliminated (``left``, from ``eliminations``) marked not completed,
    so the ranking rule puts them after those still racing at the end."""
    return [dataclasses.replace(c, completed=False) if config_key(c.params) in left else c for c in configs]


def rung_stops(sweep_dir: Path, metric: str, seeds: dict[str, int]) -> dict[str, RungStop]:
    """Configuration key -> the rung ASHA stopped it at as a whole (``asha.json``), its values by
    seed (``seeds``: trial id -> seed); {} for a sweep without ASHA."""
    saved = read_json(SweepDir(sweep_dir).asha)
    if not saved:
        return {}
    return {config: RungStop(rung, metric, {seeds[t]: v for t, v in values.items() if t in seeds})
            for config, (rung, values) in recorded_cuts(saved).items()}
