"""Reading a finished sweep, and the one rule that ranks its trials.

**The ranking rule.** A trial is judged by the selection metric (``val/miou``, the oracle,
unless the space names another ``val/`` metric or a label-free ``select/<name>``) at its
*last* evaluation, never its best-ever one: the last evaluation is the model a trial hands
on, and the best of many noisy evaluations would flatter it. Candidates are the trials that ended without failing and evaluated the
metric. Trials trained to the end rank first; trials a scheduler (ASHA) stopped early rank
after all of them, among themselves by the metric: a stopped trial saw fewer iterations,
so its number is not comparable with a finished one, but a sweep whose every trial was
stopped still has a best. Ties go to the earlier trial id. ``summary.json`` and
``best_config.yaml`` (the runner), the MLflow "best" tags (``sweep.tracker``), ``simtune
report`` and ``retrain --best`` all rank with ``rank``.

**Configurations.** With replicates (``replicates: K``, see ``sweep.replicates``) the
ranked items are configurations: the trials that share their swept values, one per seed.
A configuration is judged by the mean of the selection metric over its counted replicates:
those trained to the end, or, when none was, those a scheduler stopped early (then it ranks
as stopped early). A seed run twice (a grid pass repeated, a searcher proposing a
configuration again) counts once, with its earliest trial. Configurations are then ranked
by ``rank`` exactly as trials are (``rank_configs``); without replicates every
configuration is one trial and the two rankings agree. Best and runner-up are compared
seed by seed (``compare``) and the verdict line says whether the difference is beyond the
noise (``simtune.stats``).

A sweep folder (``<storage>/<name>/``) holds ``sweep.json``, ``space.yaml``,
``base_config.yaml``, ``runs/<trial_id>/`` (run directories, see ``simtune.rundir``),
``summary.json`` and ``best_config.yaml``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from simtune import config
from simtune.errors import ConfigError
from simtune.rundir import RunDir, read_json
from simtune.tracking.naming import experiment_name
from simtune.tracking.store import EXPERIMENT
from simtune.stats import PairedDifference, SplitHalf, Spread, paired_difference, split_half, spread, verdict

SELECTION_METRIC = "val/miou"  # selection split (frankfurt); report/ is held out

T = TypeVar("T")


# ----------------------------------------------------------------------------- the ranking rule


@dataclass(frozen=True)
class Standing:
    """What the ranking rule needs to know of one trial."""

    value: float | None  # the selection metric at the trial's last evaluation
    completed: bool  # trained to the end of its last stage
    stopped_early: bool = False  # ended by the scheduler before the end (not a failure)


def rank(items: Sequence[T], standing: Callable[[T], Standing], mode: str = "max") -> list[T]:
    """The candidates among ``items`` (given in trial-id order), best first, by the rule above."""
    sign = 1.0 if mode == "max" else -1.0
    scored = [(item, standing(item)) for item in items]
    usable = [(item, s) for item, s in scored if (s.completed or s.stopped_early) and s.value is not None
              and math.isfinite(s.value)]
    usable.sort(key=lambda pair: (pair[1].completed, sign * float(pair[1].value)), reverse=True)  # type: ignore[arg-type]
    return [item for item, _ in usable]


# ----------------------------------------------------------------------------- the sweep folder


@dataclass(frozen=True)
class SweepDir:
    """Paths of a sweep folder."""

    root: Path

    @property
    def record(self) -> Path:
        return self.root / "sweep.json"

    @property
    def space_copy(self) -> Path:
        return self.root / "space.yaml"

    @property
    def base_config(self) -> Path:
        return self.root / "base_config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def best_config(self) -> Path:
        return self.root / "best_config.yaml"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def stage0_cache(self) -> Path:
        return self.root / "stage0_cache"

    @property
    def stage1_cache(self) -> Path:
        return self.root / "stage1_cache"

    @property
    def tracking(self) -> Path:
        """Where the MLflow trial logger finds this driver's store and parent run."""
        return self.root / "tracking.json"

    def run(self, trial_id: str) -> RunDir:
        return RunDir(self.runs / trial_id)


def resolve_sweep_dir(storage: Path, sweep_name: str) -> Path:
    """The sweep folder, whether ``storage`` is the folder of sweeps or already the sweep's own.

    The sweep runner creates the sweep folder (with ``sweep.json``) before it opens the
    tracker, so a folder named like the sweep that holds ``sweep.json`` is the sweep's.
    """
    storage = Path(storage).resolve()
    if SweepDir(storage).record.is_file() or (storage.name == sweep_name and not (storage / sweep_name).is_dir()):
        return storage
    return storage / sweep_name


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


def find_sweep(storage: Path, name: str | None) -> Path:
    """The sweep folder ``<storage>/<name>``, or the most recently written one when ``name`` is None.

    Raises:
        ConfigError: no such sweep (the message lists the sweeps that exist).
    """
    storage = Path(storage).resolve()
    sweeps = sorted(p for p in storage.iterdir() if SweepDir(p).runs.is_dir()) if storage.is_dir() else []
    if name is not None:
        if SweepDir(storage / name).runs.is_dir():
            return storage / name
        known = ", ".join(p.name for p in sweeps) or "none"
        raise ConfigError(f"no sweep '{name}' in {storage} (sweeps there: {known}); pass --storage or --sweep")
    if not sweeps:
        raise ConfigError(f"no sweep in {storage} (a sweep folder holds runs/); pass --storage or --sweep")
    return max(sweeps, key=_last_written)


def _last_written(sweep_dir: Path) -> float:
    folder = SweepDir(sweep_dir)
    return max(p.stat().st_mtime for p in (folder.summary, folder.runs) if p.exists())


def _summary(sweep_dir: Path) -> dict[str, Any]:
    path = SweepDir(sweep_dir).summary
    return json.loads(path.read_text()) if path.is_file() else {}


def load_trials(sweep_dir: Path) -> list[TrialOutcome]:
    """Every trial with a resolved config under ``<sweep_dir>/runs/``, in trial-id order."""
    stopped = {t["trial_id"] for t in _summary(sweep_dir).get("trials", []) if t.get("stopped_early")}
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
    summary = _summary(sweep_dir)
    metric = summary.get("metric", SELECTION_METRIC)
    mode = summary.get("mode", "max")
    if not isinstance(metric, str) or not metric.startswith(("val/", "select/")) or mode not in ("max", "min"):
        return SELECTION_METRIC, "max"
    return metric, mode


def rank_trials(trials: Sequence[TrialOutcome], metric: str = SELECTION_METRIC,
                mode: str = "max") -> list[TrialOutcome]:
    """``trials`` ranked by the rule (``rank``), best first."""
    return rank(trials, lambda t: _trial_standing(t, metric), mode)



# ----------------------------------------------------------------------------- how a sweep was tracked


def swept_values(sweep_dir: Path, trial_id: str) -> dict[str, Any]:
    """The values the search chose for one trial (``summary.json``), in the space's order; {} if unknown."""
    for trial in _summary(sweep_dir).get("trials", []):
        if trial.get("trial_id") == trial_id:
            return dict(trial.get("params") or {})
    return {}


def experiment_of(sweep_dir: Path) -> str:
    """The MLflow experiment a sweep logged to: the one its tracker recorded, else its space's name."""
    folder = SweepDir(sweep_dir)
    recorded = read_json(folder.tracking) or {}
    if recorded.get("experiment"):
        return str(recorded["experiment"])
    started = read_json(folder.record) or {}
    return experiment_name(started["space_file"]) if started.get("space_file") else EXPERIMENT


# ----------------------------------------------------------------------------- configurations (replicates)


@dataclass(frozen=True)
class Replicate:
    """One trial as a replicate of its configuration: its seed, its standing and its final metrics."""

    trial_id: str
    seed: int
    standing: Standing
    final: dict[str, float]


@dataclass(frozen=True)
class ConfigResult:
    """One configuration (a set of swept values) over its replicates.

    ``replicates`` are the ones its statistics count, one per seed (the earliest trial of a seed
    run twice): those trained to the end, or, when none was, those a scheduler stopped early
    (then ``completed`` is False). ``trial_ids`` lists every trial of the configuration.
    """

    params: dict[str, Any]
    replicates: tuple[Replicate, ...]
    trial_ids: tuple[str, ...]
    completed: bool

    @property
    def n(self) -> int:
        return len(self.replicates)

    def by_seed(self, metric: str) -> dict[int, float]:
        """Seed -> the metric at that replicate's last evaluation (replicates that have it)."""
        return {r.seed: r.final[metric] for r in self.replicates
                if metric in r.final and math.isfinite(r.final[metric])}

    def spread(self, metric: str) -> Spread | None:
        """Mean and std over the counted replicates; None when none has ``metric``."""
        values = list(self.by_seed(metric).values())
        return spread(values) if values else None

    def standing(self, metric: str) -> Standing:
        s = self.spread(metric)
        return Standing(None if s is None else s.mean, self.completed, not self.completed)


def group_configs(items: Sequence[T], params: Callable[[T], dict[str, Any]],
                  replicate: Callable[[T], Replicate]) -> list[ConfigResult]:
    """``items`` (in trial-id order) grouped by their swept values, in order of first appearance."""
    groups: dict[str, tuple[dict[str, Any], list[Replicate]]] = {}
    for item in items:
        values = params(item)
        key = json.dumps(values, sort_keys=True, default=str)
        groups.setdefault(key, (values, []))[1].append(replicate(item))
    return [_config(values, reps) for values, reps in groups.values()]


def _config(params: dict[str, Any], replicates: list[Replicate]) -> ConfigResult:
    usable = [r for r in replicates if (r.standing.completed or r.standing.stopped_early)
              and r.standing.value is not None and math.isfinite(r.standing.value)]
    completed = any(r.standing.completed for r in usable)
    counted: dict[int, Replicate] = {}
    for r in usable:
        if r.standing.completed == completed:
            counted.setdefault(r.seed, r)
    return ConfigResult(dict(params), tuple(sorted(counted.values(), key=lambda r: r.seed)),
                        tuple(r.trial_id for r in replicates), completed)


def rank_configs(configs: Sequence[ConfigResult], metric: str, mode: str = "max") -> list[ConfigResult]:
    """Configurations best first by the one rule (``rank``) applied to their mean over replicates."""
    return rank(configs, lambda c: c.standing(metric), mode)


def compare(best: ConfigResult, other: ConfigResult, metric: str) -> PairedDifference | None:
    """``best - other`` on ``metric`` over the seeds both have (paired); None when they share none."""
    a, b = best.by_seed(metric), other.by_seed(metric)
    seeds = sorted(set(a) & set(b))
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds]) if seeds else None


def reproducibility(configs: Sequence[ConfigResult], metric: str) -> SplitHalf:
    """Split-half Spearman of the configuration ranking; replicate k = the k-th smallest seed seen."""
    seeds = sorted({s for c in configs for s in c.by_seed(metric)})
    table = {json.dumps(c.params, sort_keys=True, default=str): [c.by_seed(metric).get(s) for s in seeds]
             for c in configs}
    return split_half(table)


@dataclass(frozen=True)
class Verdict:
    """Best against runner-up: the paired difference (None when there is nothing to pair) and its line."""

    line: str
    difference: PairedDifference | None


def ranking_verdict(ranked: Sequence[ConfigResult], metric: str) -> Verdict:
    """The verdict line on a configuration ranking (best first), paired over shared seeds."""
    if len(ranked) < 2:
        return Verdict(f"Verdict: {len(ranked)} configuration(s) ranked; no runner-up to compare", None)
    diff = compare(ranked[0], ranked[1], metric)
    if diff is None:
        return Verdict("Verdict: best and runner-up share no seed; they cannot be compared paired", None)
    return Verdict(verdict(diff, unit=metric_unit(metric)), diff)


def metric_unit(metric: str) -> str:
    """How a verdict names the metric's unit: mIoU for ``*/miou``, IoU for a class IoU, else its name."""
    if metric.endswith("/miou"):
        return "mIoU"
    return "IoU" if "/iou/" in metric else metric


def swept_keys(sweep_dir: Path, trials: Sequence[TrialOutcome]) -> list[str]:
    """The keys a sweep varied: from ``summary.json``, else those that differ between trials (not ``seed``)."""
    listed = _summary(sweep_dir).get("trials") or []
    if listed and isinstance(listed[0].get("params"), dict):
        return list(listed[0]["params"])
    first = trials[0].params if trials else {}
    return [k for k in first if k != "seed" and len({json.dumps(t.params.get(k)) for t in trials}) > 1]


def load_configs(sweep_dir: Path, trials: Sequence[TrialOutcome], metric: str, mode: str) -> list[ConfigResult]:
    """The sweep's configurations from its run directories, ranked (best first; unranked ones dropped)."""
    keys = swept_keys(sweep_dir, trials)
    configs = group_configs(
        trials, lambda t: {k: t.params.get(k) for k in keys},
        lambda t: Replicate(t.trial_id, int(t.params.get("seed", 0)), _trial_standing(t, metric), dict(t.final)))
    return rank_configs(configs, metric, mode)


def _trial_standing(t: TrialOutcome, metric: str) -> Standing:
    return Standing(t.final.get(metric), t.finished and t.failure is None, t.stopped_early and t.failure is None)
