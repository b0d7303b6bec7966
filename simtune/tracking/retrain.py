"""The parent run of ``retrain --best`` in MLflow: created with its tags, params and datasets, its
verdict and description set once the seeds end, the registered champion recorded on it.

The workflow (``simtune.workflows.retrain``) decides what it says; this module writes it. The run
ends through ``store.end_run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtune.schema import Config
from simtune.tracking import naming
from simtune.tracking.naming.tags import (TAG_NOTE, TAG_REGISTERED_MODEL, TAG_ROLE, TAG_RUNNER_UP_TRIAL,
                                          TAG_SELECTION, TAG_SWEEP, TAG_SWEEP_DIR, TAG_SWEEP_PARENT, TAG_TRIAL,
                                          TAG_VERDICT)
from simtune.tracking.store import create_run, log_params, provenance_tags, set_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient


def create_retrain_run(client: MlflowClient, experiment_id: str, *, name: str, sweep_dir: Path,
                       sweep_parent_run_id: str | None, trial_id: str, runner_up_trial_id: str | None,
                       selection: str, note: str, seed: int, params: Mapping[str, Any], cfg: Config) -> str:
    """The retrain's parent run in the sweep's experiment; its id.

    Args:
        trial_id: the best configuration's trial being retrained (``runner_up_trial_id``: the runner-up's).
        selection: how the best was chosen, in words; ``note`` the description; ``seed`` the trial's (provenance).
        params: the retrain's settings and the swept values; ``cfg`` gives the datasets logged as inputs.
    """
    tags = {TAG_ROLE: "retrain", TAG_SWEEP: sweep_dir.name, TAG_SWEEP_DIR: str(sweep_dir),
            TAG_SWEEP_PARENT: sweep_parent_run_id or "none", TAG_TRIAL: trial_id, TAG_SELECTION: selection,
            TAG_NOTE: note, **naming.source_tags(), **provenance_tags(seed)}
    if runner_up_trial_id is not None:
        tags[TAG_RUNNER_UP_TRIAL] = runner_up_trial_id
    return create_run(client, experiment_id, name=name, tags=tags, params=params, cfg=cfg)


def set_outcome(client: MlflowClient, run_id: str, verdicts: Sequence[str], note: str) -> None:
    """The verdict and confirmation lines (``simtune.verdict``, if any) and the description with the outcome."""
    if verdicts:
        client.set_tag(run_id, TAG_VERDICT, " | ".join(verdicts))
    set_description(client, run_id, note)


def set_registered(client: MlflowClient, run_id: str, model: str, version: str, note: str) -> None:
    """The registered champion (``simtune.registered_model`` and the param ``registered_model``) and the
    description that links it."""
    client.set_tag(run_id, TAG_REGISTERED_MODEL, f"{model}@{naming.CHAMPION} (version {version})")
    log_params(client, run_id, {"registered_model": f"{model} version {version}"})
    set_description(client, run_id, note)


def set_description(client: MlflowClient, run_id: str, note: str) -> None:
    """The run's description (``mlflow.note.content``)."""
    set_tags(client, run_id, {TAG_NOTE: note})
