"""The child run of a sweep's trial or of a retrain's seed: found again by its tags, each point logged
once per step, marked retried or failed, and finished with what its run directory holds.

A trial's run is created by the sweep's Tune callback (``simtune.sweep.mlflow_callback``) and a
seed's by ``simtune.workflows.retrain_seeds``, both through ``store.create_run``; both end here
(``finish``): the evaluations the live logger did not send (from the run directory's histories),
its artifacts, its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtune.rundir import RunDir
from simtune.tracking.artifacts import PREDICTION_SAMPLES, log_checkpoint, log_trial_artifacts
from simtune.tracking import naming
from simtune.tracking.naming.tags import TAG_FAILURE, TAG_PARENT, TAG_PLACEMENT, TAG_RETRIES, TAG_TRIAL
from simtune.tracking.store import end_run, log_history, log_metrics, resume_run, search, set_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass
class ChildRun:
    """A trial's or seed's run and, per metric, the steps already in the store."""

    run_id: str
    logged: dict[str, set[int]] = field(default_factory=dict)


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> Run | None:
    """The newest run of trial ``trial_id`` under the parent run, found by its tags; None if it has none."""
    found = search(client, experiment_id, {TAG_PARENT: parent_run_id, TAG_TRIAL: trial_id})
    return found[0] if found else None


def reopen_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> ChildRun | None:
    """A resumed or retried trial's run, RUNNING again, with the steps it already holds; None if it has none."""
    run = find_trial_run(client, experiment_id, parent_run_id, trial_id)
    if run is None:
        return None
    child = ChildRun(run.info.run_id, _steps(client, run.info.run_id, run.data.metrics))
    resume_run(client, run)
    return child


def logged_steps(client: MlflowClient, run_id: str) -> dict[str, set[int]]:
    """Per metric of the run, the steps already in the store."""
    return _steps(client, run_id, client.get_run(run_id).data.metrics)


def _steps(client: MlflowClient, run_id: str, keys: Mapping[str, Any]) -> dict[str, set[int]]:
    return {key: {int(m.step) for m in client.get_metric_history(run_id, key)} for key in keys}


def log_points(client: MlflowClient, child: ChildRun, metrics: Mapping[str, float], step: int,
               timestamp_ms: int | None = None) -> None:
    """Log ``metrics`` at ``step``, leaving out the metrics the run already holds at that step (a retried
    or resumed trial reports its steps again)."""
    points = [(key, value, step) for key, value in metrics.items() if step not in child.logged.get(key, ())]
    log_metrics(client, child.run_id, points, timestamp_ms=timestamp_ms)
    for key, _, _ in points:
        child.logged.setdefault(key, set()).add(step)


def tag_failure(client: MlflowClient, run_id: str, reason: str) -> None:
    """Record why the run failed (``simtune.failure_reason``)."""
    client.set_tag(run_id, TAG_FAILURE, reason)


def mark_retried(client: MlflowClient, run_id: str, retries: int) -> None:
    """Record how many times Tune restarted the trial (``simtune.retries``)."""
    client.set_tag(run_id, TAG_RETRIES, str(retries))


def finish(client: MlflowClient, child: ChildRun, status: str, run_dir: Path, *, reason: str | None = None,
           tags: Mapping[str, str] | None = None, artifacts: bool = True, samples: int = PREDICTION_SAMPLES,
           checkpoint: bool = False) -> None:
    """End a trial's or seed's run: its failure reason and ``tags``, the evaluations of ``run_dir`` it lacks,
    its artifacts (figures from ``samples`` images) and, with ``checkpoint``, its final model; then ``status``."""
    if reason:
        tag_failure(client, child.run_id, reason)
    set_tags(client, child.run_id, tags or {})
    records = [{**record, **naming.stage_copies(record, stage)}  # as the live results were logged
               for stage, stage_records in RunDir(run_dir).histories().items() for record in stage_records]
    log_history(client, child.run_id, records, child.logged)
    if artifacts:
        log_trial_artifacts(client, child.run_id, run_dir, samples=samples)
    if checkpoint:
        log_checkpoint(client, child.run_id, run_dir)
    end_run(client, child.run_id, status)


def placement_tags(placement: Mapping[str, Any]) -> dict[str, str]:
    """Tags of a trial's placement (``run.json``'s ``placement``): ``simtune.placement.gpu_ids`` = ``0, 1``."""
    def text(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    return {f"{TAG_PLACEMENT}{key}": text(value) for key, value in placement.items() if key != "start"}
