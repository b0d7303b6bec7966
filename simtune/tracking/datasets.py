"""The datasets a run reads (``simtune.data.inputs``) as MLflow dataset inputs: the runs
table's Dataset column, each tagged with its role as ``mlflow.data.context`` (source,
target, selection, report), its root as the source URI and its content digest."""

from __future__ import annotations

import json
from typing import Any

from simtune.data.inputs import DataInput, data_inputs
from simtune.schema import Config
from simtune.tracking.naming.tags import TAG_CONTEXT


def log_data_inputs(client: Any, run_id: str, cfg: Config) -> list[DataInput]:
    """Log ``cfg``'s datasets as the run's inputs; returns what was logged."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = data_inputs(cfg)
    if inputs:
        client.log_inputs(run_id, datasets=[
            DatasetInput(Dataset(name=item.name, digest=item.digest, source_type="local",
                                 source=json.dumps({"uri": item.root.as_uri()}), profile=item.profile()),
                         tags=[InputTag(TAG_CONTEXT, item.context)])
            for item in inputs])
    return inputs
