"""The model registry: a retrained segmenter as an MLflow pyfunc model, versions and aliases.

One registered model per search space (``naming.model_name``). Each ``retrain`` adds a
version and moves the alias ``champion`` to it; the version that held ``champion`` before
gets ``previous``, so the last two are always one alias away::

    mlflow.pyfunc.load_model("models:/simtune-lambda_w@champion")

The model is logged as *code* (MLflow's models-from-code), not as a pickle: the model
folder holds the network's weights (``segmenter.pt``, a plain state dict), the run's
``config.yaml``, a copy of the ``simtune`` package under ``code/`` and the pinned
requirements (torch, numpy, PyYAML, mlflow). Loading needs neither simtune installed nor
trust in a pickle: the weights are read with ``torch.load(weights_only=True)``.

Logged from the seed run that trained it at its final evaluation's step (those metrics become
the model's), registered by ``mlflow.register_model``, linked as an output of the retrain run.

Input: (N, 3, H, W) float32, what ``simtune.data.datasets.image_to_tensor`` gives (BGR
minus the ImageNet mean).
Output: (N, K, h, w) float32 logits at the network's output stride.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from simtune.tracking.naming import CHAMPION, PREVIOUS

MODEL_DESCRIPTION = ("simtune segmenters retrained from the best configuration of this search space; alias "
                     f"`{CHAMPION}` is the latest, `{PREVIOUS}` the one before it")
_OLD_DESCRIPTION = ("simtune segmenters retrained from the best configuration of this search space; @champion is "
                    "the latest")
MODEL_NAME_IN_RUN = "segmenter"
WEIGHTS = "segmenter.pt"
CONFIG = "config.yaml"
_MODEL_CODE = '''"""The simtune segmenter as an MLflow pyfunc model; simtune is in this model's code/ folder."""
import mlflow

from simtune.tracking.registry import SegmenterModel

mlflow.models.set_model(SegmenterModel())
'''


class SegmenterModel(PythonModel):  # type: ignore[misc]  # mlflow has no type information
    """Logits of a simtune segmenter; its weights and config come from the model's artifacts."""

    def load_context(self, context: Any) -> None:
        import torch

        from simtune import config
        from simtune.models import segmenter_from_config

        cfg_path = Path(context.artifacts["config"])
        cfg = config.build(config.read_yaml(cfg_path), source=str(cfg_path))
        self.net = segmenter_from_config(cfg.model)
        self.net.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        self.net.eval()

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """(N, 3, H, W) float32 images -> (N, K, h, w) float32 logits."""
        import torch

        with torch.no_grad():
            images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            return self.net(images).logits.numpy()


def log_segmenter(run_id: str, tracking_uri: str, state_dict: dict[str, Any], config_file: Path,
                  num_classes: int, *, step: int = 0) -> str:
    """Log a segmenter into run ``run_id`` as a pyfunc model carrying simtune itself; returns its URI.

    Args:
        state_dict: the segmenter's weights (``Segmenter.state_dict()``).
        config_file: the run's resolved ``config.yaml`` (the network is rebuilt from it).
        step: the global iteration of the evaluation these weights scored; the run's metrics
            at that step become the logged model's metrics.
    """
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes, -1, -1))]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save(state_dict, folder / WEIGHTS)
        shutil.copy2(config_file, folder / CONFIG)
        (folder / "model_code.py").write_text(_MODEL_CODE)
        package = Path(__file__).resolve().parents[1]
        shutil.copytree(package, folder / "simtune", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        # The signature is given, so MLflow's advice on type hints and input examples does not apply.
        with using_store(tracking_uri), mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN, python_model=str(folder / "model_code.py"),
                artifacts={"weights": str(folder / WEIGHTS), "config": str(folder / CONFIG)},
                code_paths=[str(folder / "simtune")], signature=signature, pip_requirements=requirements(),
                step=int(step))
    return str(info.model_uri)


@contextlib.contextmanager
def using_store(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URI set to ``uri``; the registry URI is put back after."""
    before = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_registry_uri(before or "")  # "" = follow the tracking URI again
        if before is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


def requirements() -> list[str]:
    """The packages the model needs, pinned to the versions that logged it."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in ("torch", "numpy", "PyYAML", "mlflow")]


@dataclass(frozen=True)
class Registered:
    """A new model version and the one ``champion`` pointed at before it (None at first)."""

    name: str
    version: str
    previous: str | None


def register(client: Any, name: str, model_uri: str, link_run_id: str | None = None, *, description: str,
             tags: dict[str, str]) -> Registered:
    """Register the logged model ``model_uri`` (``models:/m-...``) as a new version of ``name`` (linked
    both ways); ``link_run_id`` gets it as an output (its Models column); ``champion`` moves to the
    new version and ``previous`` to the one that was champion."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_registered_model(name)
        if found.description == _OLD_DESCRIPTION:  # its "@champion" rendered as a link to a GitHub user
            client.update_registered_model(name, description=MODEL_DESCRIPTION)
    except MlflowException:
        client.create_registered_model(name, description=MODEL_DESCRIPTION)
    before = champion_version(client, name)
    with using_store(client.tracking_uri), contextlib.redirect_stderr(io.StringIO()):  # it prints "Created version"
        version = mlflow.register_model(model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=description)
    if link_run_id is not None and model_uri.startswith("models:/"):
        from mlflow.entities import LoggedModelOutput
        model = client.get_logged_model(model_uri.removeprefix("models:/"))
        step = next((o.step for o in client.get_run(model.source_run_id).outputs.model_outputs
                     if o.model_id == model.model_id), 0)
        client.log_outputs(link_run_id, models=[LoggedModelOutput(model.model_id, step)])
    if before is not None:
        client.set_registered_model_alias(name, PREVIOUS, before)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return Registered(name, str(version.version), before)


def champion_version(client: Any, name: str) -> str | None:
    """The version ``@champion`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None
