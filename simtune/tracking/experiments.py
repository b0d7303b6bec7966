"""The experiments simtune writes to: one per search space, in MLflow's training view, with a
configurations view and a trials chart view per sweep (``views``: the tags MLflow's "Share" button
writes, opened by the links ``naming.ui_lines`` prints); MLflow's empty ``Default`` put away."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from simtune.errors import TrackingError
from simtune.tracking import naming, views
from simtune.tracking.naming.tags import TAG_ARTIFACT_ROOT, TAG_NOTE
from simtune.tracking.store import artifact_root, one_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

_log = logging.getLogger(__name__)


def ensure_experiment(client: MlflowClient, name: str, uri: str, description: str = "") -> str:
    """The id of experiment ``name``, created if missing (by this process or a concurrent one), with
    ``naming.experiment_tags`` (set on older ones too); artifacts in ``mlartifacts/<name>/`` beside
    a SQLite store. MLflow's empty ``Default`` is put away (``hide_empty_default``)."""
    from mlflow.exceptions import MlflowException

    root = artifact_root(uri)
    tags = {**({TAG_ARTIFACT_ROOT: root} if root else {}), **naming.experiment_tags()}
    if description:
        tags[TAG_NOTE] = description
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            location = f"{root}/{_folder_name(name)}" if root else None
            try:
                experiment_id = str(client.create_experiment(name, artifact_location=location, tags=tags))
            except MlflowException:  # another sweep created it a moment ago
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found is not None:
            experiment_id = str(found.experiment_id)
            for key, value in naming.experiment_tags().items():
                if found.tags.get(key) != value:
                    client.set_experiment_tag(experiment_id, key, value)
        try:
            hide_empty_default(client)
        except Exception as exc:  # a store that refuses it (permissions) keeps its Default; harmless
            _log.info("simtune tracking: MLflow's Default experiment left as it is: %s", one_line(exc))
        return experiment_id
    except Exception as exc:  # MLflow wraps SQL and HTTP errors in several types
        raise TrackingError(f"tracking store {uri}: cannot open experiment '{name}' ({one_line(exc)})") from None


DEFAULT_EXPERIMENT = "0"  # MLflow's "Default", made with every store


def hide_empty_default(client: MlflowClient) -> bool:
    """Delete MLflow's ``Default`` experiment while it holds no run; True when it was deleted.

    MLflow creates it with every store and lists it first; simtune never writes to it. A
    deleted experiment is kept (``mlflow experiments restore --experiment-id 0`` brings it
    back); one with runs, or renamed, is left alone.
    """
    from mlflow.entities import ViewType

    default = client.get_experiment(DEFAULT_EXPERIMENT)
    if default.lifecycle_stage != "active" or default.name != "Default":
        return False
    if client.search_runs([DEFAULT_EXPERIMENT], max_results=1, run_view_type=ViewType.ALL):
        return False
    client.delete_experiment(DEFAULT_EXPERIMENT)
    return True


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


def set_sweep_view(client: MlflowClient, experiment_id: str, sweep: str, swept: Iterable[str],
                   metric: str = naming.SELECTION, *, configs: Iterable[Mapping[str, Any]] = (),
                   replicated: bool = True) -> None:
    """Write the sweep's two saved views (``views.configurations_view``, ``views.trials_view``) as
    experiment tags; ``configs`` (the swept values of each configuration) fold their groups."""
    swept = list(swept)
    for key, value in (views.configurations_view(sweep, swept, metric, configs=configs, replicated=replicated),
                       views.trials_view(sweep, swept, metric)):
        client.set_experiment_tag(experiment_id, key, value)
