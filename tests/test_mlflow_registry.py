"""The model registry and dataset inputs on a real SQLite store: aliases that move, a model that
loads where simtune is not installed, datasets with roots and content digests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simtune import config
from simtune.rundir import write_config
from simtune.data.inputs import data_inputs
from simtune.tracking.datasets import log_data_inputs
from simtune.tracking.naming import CHAMPION, PREVIOUS
from simtune.tracking.registry import log_segmenter, register

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"model": {"backbone": "small", "width": 4}}

# Run by a fresh interpreter: hide the installed (editable) simtune and any checkout on sys.path,
# prove it is gone, then load the champion and say where simtune came from.
LOAD_WITHOUT_SIMTUNE = """
import importlib.util, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p or ".", "simtune", "__init__.py"))]
assert importlib.util.find_spec("simtune") is None, "simtune is still importable"
import mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
logits = model.predict(np.zeros((2, 3, 64, 96), dtype=np.float32))
import simtune
print(logits.shape, simtune.__file__)
"""


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Any, str]:
    """A SQLite store with one experiment: (uri, client, experiment id)."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("space", artifact_location=(tmp_path / "store" / "mlartifacts").as_uri())
    return uri, client, str(experiment)


def retrain(client: Any, uri: str, experiment: str, tmp_path: Path, seed: int) -> tuple[Any, str, str]:
    """A retrain parent with one seed run holding a logged segmenter; registered as a new version.

    Returns (the registered version, the parent's run id, the seed run's id).
    """
    from simtune.models import build_segmenter

    cfg_file = tmp_path / f"config{seed}.yaml"
    write_config(config.build({**TINY_MODEL, "seed": seed}), cfg_file)
    parent = client.create_run(experiment, run_name=f"retrain {seed}").info.run_id
    child = client.create_run(experiment, run_name=f"seed {seed}", tags={"mlflow.parentRunId": parent}).info.run_id
    for step, value in ((0, 1.0 + seed), (6, 40.0 + seed)):  # stage 0's last evaluation, then the final one
        client.log_metric(child, "val/miou", value, step=step)
    model_uri = log_segmenter(child, uri, build_segmenter("small", 19, width=4).state_dict(), cfg_file, 19, step=6)
    registered = register(client, "simtune-space", model_uri, parent, description=f"seed {seed}",
                          tags={"seed": str(seed)})
    for run_id in (child, parent):
        client.set_terminated(run_id)
    return registered, parent, child


def test_champion_moves_to_each_new_retrain_and_previous_keeps_the_last_one(store: tuple[str, Any, str],
                                                                            tmp_path: Path) -> None:
    uri, client, experiment = store
    first, _, first_seed = retrain(client, uri, experiment, tmp_path, 0)
    assert (first.version, first.previous) == ("1", None)
    assert client.get_model_version_by_alias("simtune-space", CHAMPION).run_id == first_seed
    second, second_parent, second_seed = retrain(client, uri, experiment, tmp_path, 1)
    assert (second.version, second.previous) == ("2", "1")
    champion = client.get_model_version_by_alias("simtune-space", CHAMPION)
    previous = client.get_model_version_by_alias("simtune-space", PREVIOUS)
    assert (str(champion.version), champion.run_id, champion.tags["seed"]) == ("2", second_seed, "1")
    assert (str(previous.version), previous.run_id) == ("1", first_seed)
    assert champion.description == "seed 1"
    assert len(client.search_registered_models()) == 1  # one model per search space, not one per retrain
    # The version is the logged model: the model page lists it, and the model holds the final step's metric.
    assert champion.source.startswith("models:/m-")  # MLflow's SQL registry keeps the link as the source
    model = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "simtune-space", "version": 2}]
    assert [(m.key, m.value, m.step) for m in model.metrics] == [("val/miou", 41.0, 6)]
    # The retrain parent holds the model as an output (its page and the Models column show it).
    outputs = client.get_run(second_parent).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model.model_id, 6)]


def test_champion_loads_through_pyfunc_where_simtune_is_only_in_the_model(store: tuple[str, Any, str],
                                                                          tmp_path: Path) -> None:
    uri, client, experiment = store
    retrain(client, uri, experiment, tmp_path, 0)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_SIMTUNE, uri, "models:/simtune-space@champion"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shape, origin = done.stdout.strip().splitlines()[-1].split(") ")
    assert shape == "(2, 19, 8, 12"  # logits at the small backbone's output stride 8
    assert "/mlartifacts/" in origin and origin.endswith("/code/simtune/__init__.py")
    assert not origin.startswith(str(REPO))


def test_datasets_are_logged_as_inputs_with_roots_and_content_digests(store: tuple[str, Any, str],
                                                                      tmp_path: Path) -> None:
    from simtune.data.synth import generate_benchmark

    uri, client, experiment = store
    bench = generate_benchmark(tmp_path / "bench", num_source=4, num_target_train=3, num_target_val_per_city=1,
                               workers=1)
    cfg = config.build({"data": {"source": {"root": str(bench.source_root)},
                                 "target": {"dataset": "cityscapes", "root": str(bench.target_root)}}})
    run_id = client.create_run(experiment).info.run_id
    logged = log_data_inputs(client, run_id, cfg)
    inputs = client.get_run(run_id).inputs.dataset_inputs
    by_context = {i.tags[0].value: i.dataset for i in inputs}
    assert set(by_context) == {"source", "target", "selection", "report"}  # the split that reports is one too
    assert json.loads(by_context["source"].source)["uri"] == bench.source_root.resolve().as_uri()
    assert json.loads(by_context["selection"].profile) == {"images": 1, "split": "val:selection"}  # frankfurt
    assert json.loads(by_context["report"].profile) == {"images": 2, "split": "val:report"}  # lindau, munster
    assert by_context["report"].name == "cityscapes val · report (lindau, munster)"
    assert len({d.digest for d in by_context.values()}) == 4 and all(len(d.digest) == 16 for d in logged)
    # Same files, same digest; one changed byte, another digest.
    again = {d.context: d.digest for d in data_inputs(cfg)}
    assert again == {d.context: d.digest for d in logged}
    image = sorted((bench.source_root / "images").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")
    from simtune.data import inputs as described

    described._describe.cache_clear()
    assert {d.context: d.digest for d in data_inputs(cfg)}["source"] != again["source"]


def test_a_missing_dataset_root_is_left_out_not_an_error(tmp_path: Path) -> None:
    cfg = config.build({"data": {"source": {"root": str(tmp_path / "nowhere")},
                                 "target": {"dataset": "cityscapes", "root": str(tmp_path / "nowhere")}}})
    assert data_inputs(cfg) == []
