"""Finding runs again by their tags and logging params, metrics and artifacts to them.

Part of ``simtune.tracking.store`` (see its docstring); import from there.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from simtune.provenance import describe
from simtune.schema import Config
from simtune.tracking.datasets import log_data_inputs
from simtune.tracking.naming.tags import (TAG_DEVICE, TAG_GIT_COMMIT, TAG_GIT_REVISION, TAG_PYTHON, TAG_ROLE,
                                          TAG_SWEEP, TAG_SWEEP_DIR, TAG_VERSION)
from simtune.tracking.store.connection import _quote

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

EXPERIMENT = "simtune"
CHECKPOINT_POLICIES = ("best", "all", "none")

STEP_KEYS = ("step", "iteration")  # the global iteration: MLflow's step, never a metric of its own
_MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
_MAX_METRICS_PER_BATCH = 1000
_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- finding and writing runs


def create_run(client: MlflowClient, experiment_id: str, *, name: str, tags: Mapping[str, str],
               params: Mapping[str, Any] | None = None, cfg: Config | None = None) -> str:
    """A new run named ``name`` with ``tags`` and ``params``, and ``cfg``'s datasets as its inputs; its id."""
    run_id = str(client.create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id)
    log_params(client, run_id, params or {})
    if cfg is not None:
        log_data_inputs(client, run_id, cfg)
    return run_id


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set each of ``tags`` on the run, in their order."""
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def resume_run(client: MlflowClient, run: Run) -> None:
    """Mark a run found again (a resumed sweep, a retried trial) RUNNING, unless it is."""
    if run.info.status != "RUNNING":
        client.update_run(run.info.run_id, status="RUNNING")


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """End the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""
    client.set_terminated(run_id, status)


def search(client: MlflowClient, experiment_id: str, tags: Mapping[str, str],
           *, newest_first: bool = True) -> list[Run]:
    """Every run of the experiment whose tags equal ``tags`` (all pages)."""
    clauses = [f"tags.`{key}` = '{_quote(value)}'" for key, value in tags.items()]
    order = ["attributes.start_time DESC" if newest_first else "attributes.start_time ASC"]
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=1000,
                                  order_by=order, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def param_text(value: Any) -> str:
    """A config value as an MLflow param string (lists as JSON, ``[160, 96]``)."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in batches MLflow accepts."""
    from mlflow.entities import Param

    items = [Param(key, param_text(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start:start + _MAX_PARAMS_PER_BATCH], synchronous=True)


def log_metrics(client: MlflowClient, run_id: str, points: Iterable[tuple[str, float, int]],
                timestamp_ms: int | None = None) -> int:
    """Log ``(key, value, step)`` points, skipping non-finite values; returns how many were logged."""
    from mlflow.entities import Metric

    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    items = [Metric(key, float(value), stamp, int(step)) for key, value, step in points
             if math.isfinite(float(value))]
    for start in range(0, len(items), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[start:start + _MAX_METRICS_PER_BATCH], synchronous=True)
    return len(items)


def log_history(client: MlflowClient, run_id: str, history: Iterable[Mapping[str, Any]],
                logged: MutableMapping[str, set[int]] | None = None) -> int:
    """Log evaluation records (``{"step": s, "val/miou": ..., ...}``) at their global step.

    Args:
        logged: key -> steps already in the store; those points are left out, and the
            points logged here are added to it.
    """
    logged = logged if logged is not None else {}
    points = [(key, value, int(record["step"])) for record in history for key, value in record.items()
              if key not in STEP_KEYS and _is_number(value) and int(record["step"]) not in logged.get(key, ())]
    for key, _, step in points:
        logged.setdefault(key, set()).add(step)
    return log_metrics(client, run_id, points)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def log_json_artifact(client: MlflowClient, run_id: str, payload: Any, name: str, folder: str | None = None) -> None:
    """Write ``payload`` as ``name`` (JSON or, for ``*.yaml``, YAML) and log it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        text = yaml.safe_dump(payload, sort_keys=False) if name.endswith(".yaml") else json.dumps(payload, indent=1,
                                                                                                  default=str)
        path.write_text(text)
        client.log_artifact(run_id, str(path), folder)


def provenance_tags(seed: int) -> dict[str, str]:
    """Git revision and package versions as tags (MLflow's own git tag included)."""
    info = describe(seed)
    tags = {TAG_GIT_REVISION: info["git_revision"], TAG_GIT_COMMIT: info["git_revision"],
            TAG_PYTHON: info["python"], TAG_DEVICE: str(info["device_name"])}
    tags.update({f"{TAG_VERSION}{name}": version for name, version in info["packages"].items()})
    return tags


def find_sweep_parent(client: MlflowClient, experiment_id: str, sweep_name: str, sweep_dir: Path) -> Run | None:
    """The newest parent run of this sweep folder (or, if the folder moved, of this sweep name), or None."""
    tags = {TAG_ROLE: "sweep", TAG_SWEEP: sweep_name}
    runs = search(client, experiment_id, {**tags, TAG_SWEEP_DIR: str(Path(sweep_dir).resolve())})
    runs = runs or search(client, experiment_id, tags)
    return runs[0] if runs else None
