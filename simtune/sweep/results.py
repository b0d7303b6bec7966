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
    return rank(trials, lambda t: Standing(t.final.get(metric), t.finished and t.failure is None,
                                           t.stopped_early and t.failure is None), mode)


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
