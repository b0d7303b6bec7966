"""A ``ray.tune.Callback`` that records every trial of a sweep as an MLflow child run.

It runs in the Ray driver, so one process writes the store however many trials run at
once (SQLite allows one writer). For each trial it

- creates the child run on the first result (or, on resume, finds it by its trial-id tag),
  with the trial's resolved config as params;
- logs every reported number at ``step = result["iteration"]`` (the global iteration),
  skipping points already logged, so retried and resumed trials do not repeat them; at
  the end, evaluations that never reached the driver (a sweep interrupted between a
  trial's report and its callback) are filled in from the run dir's ``history.json``;
- on completion or error logs the run directory's config, pseudo-label thresholds,
  evaluation histories, figures and (policy "all") the final model, then ends the run
  FINISHED (tagged ``simtune.stopped_early`` when a scheduler cut it short) or FAILED with
  the failure reason as a tag.

A tracking failure is logged as a warning and counted; it never stops the sweep (the run
directories keep everything).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from simtune import config
from simtune.errors import ConfigError
from simtune.tracking import figures
from simtune.tracking.store import (TAG_FAILURE, TAG_PARENT, TAG_ROLE, TAG_RUN_DIR, TAG_STOPPED, TAG_SWEEP, TAG_TRIAL,
                                    log_history, log_metrics, log_params, one_line, search)

log = logging.getLogger(__name__)

_NOT_METRICS = frozenset(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_id", "experiment_tag", "date",
                                              "timestamp", "pid", "hostname", "node_ip", "should_checkpoint",
                                              "training_iteration"}
PREDICTION_SAMPLES = 3  # selection images drawn per trial (Figure 4 layout)


@dataclass
class _Child:
    """A trial's child run and, per metric, the steps already in the store."""

    run_id: str
    logged: dict[str, set[int]] = field(default_factory=dict)


class MlflowTrialLogger(tune.Callback):
    """Child run per trial under the sweep's parent run; see the module docstring."""

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep_name: str,
                 runs_dir: Path, base_params: dict[str, Any], checkpoint_policy: str = "best",
                 samples: int = PREDICTION_SAMPLES) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self.runs_dir = Path(runs_dir)
        self.base_params = dict(base_params)
        self.checkpoint_policy = checkpoint_policy
        self.samples = samples
        self.write_errors = 0
        self._client: Any = None
        self._children: dict[str, _Child] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment; the client and cache are rebuilt."""
        state = dict(self.__dict__)
        state["_client"], state["_children"] = None, {}
        return state

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    # ------------------------------------------------------------------------- Tune hooks

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self._guarded("a result", trial, lambda: self._log_result(trial, result))

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded("a retry", trial, lambda: self.client.set_tag(
            self._child(trial).run_id, "simtune.retries", str(getattr(trial, "num_failures", 0))))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded("the end", trial, lambda: self._end(trial, "FINISHED", None))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded("the failure", trial, lambda: self._end(trial, "FAILED", failure_reason(trial)))

    # ------------------------------------------------------------------------- internals

    def _guarded(self, what: str, trial: Any, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # tracking must never stop a sweep; the run dirs keep everything
            self.write_errors += 1
            log.warning("simtune tracking: could not log %s of trial %s to %s: %s", what, trial.trial_id,
                        self.tracking_uri, one_line(exc))

    def _log_result(self, trial: Any, result: dict[str, Any]) -> None:
        child = self._child(trial)
        step = int(result.get("iteration", result.get("training_iteration", 0)))
        points = [(k, v, step) for k, v in result_metrics(result).items() if step not in child.logged.get(k, ())]
        stamp = int(float(result.get("timestamp") or time.time()) * 1000)
        log_metrics(self.client, child.run_id, points, timestamp_ms=stamp)
        for key, _, _ in points:
            child.logged.setdefault(key, set()).add(step)
        if isinstance(result.get("failure_reason"), str):
            self.client.set_tag(child.run_id, TAG_FAILURE, result["failure_reason"][:5000])

    def _child(self, trial: Any) -> _Child:
        """The trial's child run: cached, found again by tag, or created with its params."""
        trial_id = str(trial.trial_id)
        if trial_id in self._children:
            return self._children[trial_id]
        found = search(self.client, self.experiment_id, {TAG_PARENT: self.parent_run_id, TAG_TRIAL: trial_id})
        if found:
            run = found[0]
            child = _Child(run.info.run_id, self._logged_steps(run))
            if run.info.status != "RUNNING":
                self.client.update_run(run.info.run_id, status="RUNNING")
        else:
            child = _Child(self._create_child(trial))
        self._children[trial_id] = child
        return child

    def _create_child(self, trial: Any) -> str:
        trial_id = str(trial.trial_id)
        searched = flat_dict(getattr(trial, "config", {}) or {})
        tags = {TAG_PARENT: self.parent_run_id, TAG_ROLE: "trial", TAG_SWEEP: self.sweep_name, TAG_TRIAL: trial_id,
                TAG_RUN_DIR: str(self.runs_dir / trial_id), "simtune.searched": ", ".join(searched)}
        run = self.client.create_run(self.experiment_id, run_name=trial_id, tags=tags)
        log_params(self.client, run.info.run_id, self._params(trial_id, searched))
        return str(run.info.run_id)

    def _params(self, trial_id: str, searched: dict[str, Any]) -> dict[str, Any]:
        """The trial's resolved config: its run dir's ``config.yaml``, else base + sampled values."""
        path = self.runs_dir / trial_id / "config.yaml"
        try:
            resolved = config.flatten(config.build(config.read_yaml(path), source=str(path)))
        except ConfigError:  # not written yet (a trial that failed before starting)
            resolved = {**self.base_params, **{k: v for k, v in searched.items() if k in self.base_params}}
        extra = {f"search.{k}": v for k, v in searched.items() if k not in resolved}
        return {**resolved, **extra}

    def _logged_steps(self, run: Any) -> dict[str, set[int]]:
        return {key: {int(m.step) for m in self.client.get_metric_history(run.info.run_id, key)}
                for key in run.data.metrics}

    def _end(self, trial: Any, status: str, reason: str | None) -> None:
        child = self._child(trial)
        if reason:
            self.client.set_tag(child.run_id, TAG_FAILURE, reason)
        run_dir = self.runs_dir / str(trial.trial_id)
        if status == "FINISHED":  # a trial ASHA stopped also completes, without its results.json
            self.client.set_tag(child.run_id, TAG_STOPPED, str(not (run_dir / "results.json").is_file()).lower())
        log_history(self.client, child.run_id, figures.history_records(run_dir), child.logged)
        log_trial_artifacts(self.client, child.run_id, run_dir, samples=self.samples)
        if self.checkpoint_policy == "all" and status == "FINISHED":
            log_checkpoint(self.client, child.run_id, run_dir)
        self.client.set_terminated(child.run_id, status)
        self._children.pop(str(trial.trial_id), None)


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a Tune result, without Tune's own bookkeeping keys."""
    return {key: float(value) for key, value in result.items()
            if key not in _NOT_METRICS and not key.startswith("__") and isinstance(value, (int, float))
            and not isinstance(value, bool) and math.isfinite(float(value))}


def flat_dict(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"stage1": {"lambda_ci": x}}`` and ``{"stage1.lambda_ci": x}`` both -> dotted keys."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def failure_reason(trial: Any) -> str:
    """The last line of the trial's error file (the exception), or a generic note."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1][:5000]
    return "trial errored (no error file)"


# ----------------------------------------------------------------------------- artifacts of a run directory


RUN_FILES = ("config.yaml", "run.json", "results.json", "failure.json", "attempts.jsonl")


def log_trial_artifacts(client: Any, run_id: str, run_dir: Path, *, samples: int = PREDICTION_SAMPLES) -> None:
    """Config, provenance, thresholds, histories and figures of a run directory, as artifacts."""
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name), "run")
    thresholds = run_dir / "pseudo" / "thresholds.json"
    if thresholds.is_file():
        client.log_artifact(run_id, str(thresholds), "pseudo")
    for stage in figures.STAGES:
        history = run_dir / stage / "history.json"
        if history.is_file():
            client.log_artifact(run_id, str(history), f"history/{stage}")
    log_figures(client, run_id, run_dir, samples=samples)


def log_figures(client: Any, run_id: str, run_dir: Path, *, samples: int = PREDICTION_SAMPLES) -> list[str]:
    """Draw and log the run's figures; a figure that fails is skipped with a warning.

    Returns:
        the artifact names logged, e.g. ``["figures/miou_curve.png", ...]``.
    """
    histories = figures.read_histories(run_dir)
    last = figures.last_evaluation(histories)
    makers = {
        "miou_curve.png": lambda: figures.miou_curve(histories, f"{run_dir.name}: mIoU over iterations")
        if histories else None,
        "class_iou.png": lambda: figures.class_iou_bars(last[1], f"{run_dir.name}: per-class IoU, {last[0]} "
                                                       f"iteration {last[1]['step']}") if last else None,
        "predictions.png": lambda: figures.prediction_samples(run_dir, samples) if samples else None,
    }
    logged = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in makers.items():
            try:
                fig = make()
            except Exception as exc:  # a figure is a convenience; the metrics are already logged
                log.warning("simtune tracking: figure %s of %s skipped: %s", name, run_dir, one_line(exc))
                continue
            if fig is not None:
                client.log_artifact(run_id, str(figures.save_figure(fig, Path(tmp) / name)), "figures")
                logged.append(f"figures/{name}")
    return logged


def log_checkpoint(client: Any, run_id: str, run_dir: Path) -> str | None:
    """Log the final segmenter weights as ``checkpoint/<stage>/model.pt`` with ``checkpoint/config.yaml``.

    The ``checkpoint/`` folder, once downloaded, is a run directory ``simtune eval`` reads.
    Returns:
        the stage whose model was logged, or None when the run has no final model.
    """
    for stage in reversed(figures.STAGES):
        model = run_dir / stage / "model.pt"
        if model.is_file():
            client.log_artifact(run_id, str(model), f"checkpoint/{stage}")
            if (run_dir / "config.yaml").is_file():
                client.log_artifact(run_id, str(run_dir / "config.yaml"), "checkpoint")
            client.set_tag(run_id, "simtune.checkpoint", f"checkpoint/{stage}/model.pt")
            return stage
    return None
