"""A ``ray.tune.Callback`` that records every trial of a sweep as an MLflow child run.

It runs in the Ray driver, so one process writes the store however many trials run at
once (SQLite allows one writer). For each trial it

- creates the child run on the first result (or, on resume, finds it by its trial-id tag),
  named after its swept values (``λ_ci=0.01 w=200 · 00004``), with the trial's resolved
  config as params, its datasets as inputs, and a description that lists how it differs
  from the base config and links the sweep's parent run;
- logs every reported number at ``step = result["iteration"]`` (the global iteration;
  ``iteration`` itself is the step, not a metric),
  skipping points already logged, so retried and resumed trials do not repeat them; at
  the end, evaluations that never reached the driver (a sweep interrupted between a
  trial's report and its callback) are filled in from the run dir's ``history.json``;
- on completion or error logs the run directory's config, pseudo-label thresholds,
  evaluation histories, figures and (policy "all") the final model, then ends the run
  FINISHED (tagged ``simtune.stopped_early`` when a scheduler cut it short) or FAILED with
  the failure reason as a tag.

A tracking failure is logged as a warning and counted; it never stops the sweep (the run
directories keep everything).

Tune pickles its callbacks with the experiment and a resumed sweep gets them back from
there; ``setup`` (called by Tune at the start of every run, resumed or not) therefore
reads the store and parent run of the *current* driver from the sweep's ``tracking.json``,
which ``SweepTracker.open`` writes.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from simtune import config
from simtune.errors import ConfigError
from simtune.keys import flat_dict
from simtune.rundir import RunDir, read_json
from simtune.search.replicates import replicate_index, config_values
from simtune.results.sweepdir import SweepDir
from simtune.tracking import naming
from simtune.tracking import trials as child_runs
from simtune.tracking.sweep import SweepTracker
from simtune.tracking.artifacts import PREDICTION_SAMPLES
from simtune.tracking.naming.tags import (TAG_NOTE, TAG_PARENT, TAG_REPLICATE, TAG_ROLE, TAG_RUN_DIR, TAG_SEARCHED,
                                          TAG_STOPPED, TAG_SWEEP, TAG_TRIAL)
from simtune.tracking.store import connect, create_run, one_line
from simtune.tracking.trials import ChildRun

log = logging.getLogger(__name__)

_NOT_METRICS = frozenset(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_id", "experiment_tag", "date",
                                              "timestamp", "pid", "hostname", "node_ip", "should_checkpoint",
                                              "training_iteration", "iteration"}


class MlflowTrialLogger(tune.Callback):
    """Child run per trial under the sweep's parent run; see the module docstring."""

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep_name: str,
                 runs_dir: Path, base_params: dict[str, Any], checkpoint_policy: str = "best",
                 samples: int = PREDICTION_SAMPLES, swept: tuple[str, ...] = ()) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self.runs_dir = Path(runs_dir)
        self.base_params = dict(base_params)
        self.checkpoint_policy = checkpoint_policy
        self.samples = samples
        self.swept = tuple(swept)  # the space's keys in its file's order; they name the runs
        self.source = naming.source_tags()  # this driver's command line and user
        self.write_errors = 0
        self._client: Any = None
        self._children: dict[str, ChildRun] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment; the client and cache are rebuilt."""
        state = dict(self.__dict__)
        state["_client"], state["_children"] = None, {}
        return state

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.tracking_uri)
        return self._client

    # ------------------------------------------------------------------------- Tune hooks

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        """Take this driver's store and parent run from ``tracking.json`` (see the module docstring)."""
        current = read_json(SweepDir(self.runs_dir.parent).tracking)
        if current is not None:
            for key in ("tracking_uri", "experiment_id", "parent_run_id", "checkpoint_policy"):
                setattr(self, key, current[key])
            self._client, self._children = None, {}

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self._guarded("a result", trial, lambda: self._log_result(trial, result))

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded("a retry", trial, lambda: child_runs.mark_retried(
            self.client, self._child(trial).run_id, int(getattr(trial, "num_failures", 0))))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        reason = RunDir(self.runs_dir / str(trial.trial_id)).failure_reason()  # a non-finite loss ends normally
        self._guarded("the end", trial, lambda: self._end(trial, "FAILED" if reason else "FINISHED", reason))

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
        stamp = int(float(result.get("timestamp") or time.time()) * 1000)
        child_runs.log_points(self.client, child, result_metrics(result), step, timestamp_ms=stamp)
        if isinstance(result.get("failure_reason"), str):
            child_runs.tag_failure(self.client, child.run_id, result["failure_reason"][:5000])

    def _child(self, trial: Any) -> ChildRun:
        """The trial's child run: cached, found again by tag, or created with its params."""
        trial_id = str(trial.trial_id)
        if trial_id not in self._children:
            found = child_runs.reopen_trial_run(self.client, self.experiment_id, self.parent_run_id, trial_id)
            self._children[trial_id] = found or ChildRun(self._create_child(trial))
        return self._children[trial_id]

    def _create_child(self, trial: Any) -> str:
        trial_id = str(trial.trial_id)
        tune_config = getattr(trial, "config", {}) or {}
        searched = flat_dict(config_values(tune_config))
        values = {key: searched[key] for key in (*self.swept, *searched) if key in searched}
        params = self._params(trial_id, searched)
        replicate = replicate_index(tune_config)
        text = naming.description(
            f"Trial {naming.trial_index(trial_id)} of sweep {self.sweep_name}",
            [f"seed {params.get('seed', '?')} (replicate {replicate}); one seed: `{naming.SELECTION}`, "
             f"`{naming.REPORT}` are this trial's own",
             *(naming.config_diff(values, self.base_params) or ["the base config's values"])],
            [naming.run_link(self.experiment_id, self.parent_run_id, f"sweep {self.sweep_name}")])
        tags = {TAG_PARENT: self.parent_run_id, TAG_ROLE: "trial", TAG_SWEEP: self.sweep_name, TAG_TRIAL: trial_id,
                TAG_RUN_DIR: str(self.runs_dir / trial_id), TAG_SEARCHED: ", ".join(searched),
                TAG_REPLICATE: str(replicate), TAG_NOTE: text, **self.source}
        run_dir = RunDir(self.runs_dir / trial_id)
        return create_run(self.client, self.experiment_id, name=naming.trial_run_name(values, trial_id), tags=tags,
                          params=params, cfg=run_dir.config() if run_dir.has_config() else None)

    def _params(self, trial_id: str, searched: dict[str, Any]) -> dict[str, Any]:
        """The trial's resolved config: its run dir's ``config.yaml``, else base + sampled values."""
        try:
            resolved = config.flatten(RunDir(self.runs_dir / trial_id).config())
        except ConfigError:  # not written yet (a trial that failed before starting)
            resolved = {**self.base_params, **{k: v for k, v in searched.items() if k in self.base_params}}
        extra = {f"search.{k}": v for k, v in searched.items() if k not in resolved}
        return {**resolved, **extra}

    def _end(self, trial: Any, status: str, reason: str | None) -> None:
        run = RunDir(self.runs_dir / str(trial.trial_id))
        tags = {TAG_STOPPED: str(not run.finished()).lower()} if status == "FINISHED" else {}  # ASHA's stops too
        tags.update(child_runs.placement_tags((read_json(run.run_file) or {}).get("placement") or {}))
        child_runs.finish(self.client, self._child(trial), status, run.root, reason=reason, tags=tags,
                      samples=self.samples, checkpoint=self.checkpoint_policy == "all" and status == "FINISHED")
        self._children.pop(str(trial.trial_id), None)


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a Tune result, without Tune's own bookkeeping keys; the evaluations in
    ``naming.STAGED`` once more under their stage (``stage2/val/miou``), so a run's charts show where
    one stage ends and the next begins."""
    out = {key: float(value) for key, value in result.items()
           if key not in _NOT_METRICS and not key.startswith("__") and isinstance(value, (int, float))
           and not isinstance(value, bool) and math.isfinite(float(value))}
    stage = out.get("stage")
    if stage is not None:
        out.update(naming.stage_copies(out, f"stage{int(stage)}"))
    return out


def failure_reason(trial: Any) -> str:
    """The last line of the trial's error file (the exception), or a generic note."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1][:5000]
    return "trial errored (no error file)"


def trial_loggers(tracker: SweepTracker) -> list[tune.Callback]:
    """The Tune callback that logs every trial of ``tracker``'s sweep as a child of its parent run."""
    return [MlflowTrialLogger(tracking_uri=tracker.tracking_uri, experiment_id=tracker.experiment_id,
                              parent_run_id=tracker.parent_run_id, sweep_name=tracker.sweep_name,
                              runs_dir=SweepDir(tracker.sweep_dir).runs, base_params=tracker.base_params,
                              checkpoint_policy=tracker.checkpoint_policy, swept=tracker.swept)]
