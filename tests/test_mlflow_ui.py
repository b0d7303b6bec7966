"""What a user lands on in MLflow after ``simtune sweep`` -> ``simtune retrain --best``, read
through a real ``mlflow ui`` server's REST API: the training view, the sweep's saved runs
table, one name per quantity, and the champion's logged model with its final numbers and
its registered version."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import mlflow_ui
from simtune.rundir import RunDir
from simtune.testing import simtune, write_tiny_space
from simtune.tracking import naming

SWEEP = "ui"


@pytest.fixture(scope="module")
def retrained(tiny_bench: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """2 configurations x 2 replicates on the tiny benchmark, then ``retrain --best --seeds 2``."""
    tmp = tmp_path_factory.mktemp("ui")
    space = write_tiny_space(tmp, tiny_bench, {"stage1.lambda_ci": {"grid": [0.001, 0.01]}}, replicates=2,
                             search={"algorithm": "grid"}, resources={"cpus": 1})
    sweep = simtune("sweep", str(space), "--name", SWEEP, "--storage", "sweeps", cwd=tmp)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    retrain = simtune("retrain", "--best", "--seeds", "2", cwd=tmp)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    storage = shlex.split(retrain.stdout.strip().splitlines()[-1])[-1]  # simtune ui --storage DIR
    uri = f"sqlite:///{storage}/mlflow.db"
    with mlflow_ui(uri) as url:
        yield {"dir": tmp, "uri": uri, "api": f"{url}/api/2.0/mlflow", "sweep": sweep.stdout, "retrain": retrain.stdout}



def get(api: str, path: str, **params: Any) -> Any:
    import requests

    reply = requests.get(f"{api}/{path}", params=params, timeout=30)
    assert reply.status_code == 200, reply.text[:500]
    return reply.json()


def runs(api: str, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
    import requests

    reply = requests.post(f"{api}/runs/search", timeout=30, json={
        "experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000})
    assert reply.status_code == 200, reply.text[:500]
    return list(reply.json().get("runs", []))


def by_key(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


@pytest.mark.ray_sweep
def test_printed_link_opens_the_sweeps_runs_table_in_the_training_view(retrained: dict[str, Any]) -> None:
    api = retrained["api"]
    experiment = get(api, "experiments/get-by-name", experiment_name="space")["experiment"]
    tags = by_key(experiment["tags"])
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's training view
    link = naming.ui_url(retrained["uri"], experiment["experiment_id"], sweep=SWEEP)
    charts = naming.ui_url(retrained["uri"], experiment["experiment_id"], sweep=SWEEP, charts=True)
    for stdout in (retrained["sweep"], retrained["retrain"]):
        assert f"  configurations: {link}\n  every trial, charted: {charts}\n" in stdout
    assert "workflowType=machine_learning" in link and f"viewStateShareKey={SWEEP}" in link
    view = json.loads(tags[f"mlflow.sharedViewState.{SWEEP}"])  # what the link's view key opens
    assert view["columnOrder"][2] == "params.`stage1.lambda_ci`"  # after Run Name and Created
    assert {"metrics.`val/miou`", "metrics.`config/val/miou_mean`", "metrics.`config/n_seeds`"} <= set(
        view["selectedColumns"])
    shown = runs(api, experiment["experiment_id"], view["searchFilter"])
    roles = sorted(by_key(r["data"]["tags"])["simtune.role"] for r in shown)
    assert roles == ["configuration"] * 2 + ["trial"] * 4  # grouped: one folded row per configuration
    groups = {",".join(f"param.stage1.lambda_ci.{p['value']}" for p in r["data"]["params"]
                       if p["key"] == "stage1.lambda_ci") for r in shown}
    assert groups == set(view["groupsExpanded"]) and not any(view["groupsExpanded"].values())
    trials = json.loads(tags[f"mlflow.sharedViewState.{SWEEP}-trials"])
    assert len(runs(api, experiment["experiment_id"], trials["searchFilter"])) == 4  # every trial charted
    # MLflow's empty "Default" experiment is put away (deleted, restorable), not listed first.
    import requests

    listed = requests.post(f"{api}/experiments/search", json={"max_results": 100}, timeout=30).json()["experiments"]
    assert [e["name"] for e in listed] == ["space"]


@pytest.mark.ray_sweep
def test_one_name_per_quantity_and_runs_that_describe_themselves(retrained: dict[str, Any]) -> None:
    api = retrained["api"]
    experiment_id = get(api, "experiments/get-by-name", experiment_name="space")["experiment"]["experiment_id"]
    found = {role: runs(api, experiment_id, f"tags.`simtune.role` = '{role}'")
             for role in ("sweep", "trial", "configuration", "retrain")}
    for config in found["configuration"]:  # means over seeds, never under a trial's names
        metrics = by_key(config["data"]["metrics"])
        assert set(metrics) == {"config/val/miou_mean", "config/val/miou_std", "config/report/miou_mean",
                                "config/report/miou_std", "config/n_seeds", "config/val/miou_adjusted",
                                "config/val/miou_adjusted_se"} and metrics["config/n_seeds"] == 2
        # every configuration on the same two seeds: the seed-adjusted estimate is the mean
        assert metrics["config/val/miou_adjusted"] == pytest.approx(metrics["config/val/miou_mean"])
        tags = by_key(config["data"]["tags"])
        assert "mean over 2 seeds (0, 1)" in tags["mlflow.note.content"]
        assert tags["mlflow.source.name"] == "simtune sweep" and config["inputs"]["dataset_inputs"]
    seeds = set()
    for trial in found["trial"]:
        tags, metrics = by_key(trial["data"]["tags"]), by_key(trial["data"]["metrics"])
        assert "val/miou" in metrics and not any(k.startswith("config/") for k in metrics)
        assert "stage2/val/miou" in metrics  # the per-stage series that shows the boundary
        seeds.add(tags["mlflow.note.content"].split("- seed ", 1)[1].split(" ", 1)[0])
        assert tags["mlflow.source.name"] == "simtune sweep"  # the Source column: the command, not its tail
        assert tags["simtune.command"].startswith("simtune sweep ") and "--name ui" in tags["simtune.command"]
        contexts = {t["value"] for i in trial["inputs"]["dataset_inputs"] for t in i["tags"]}
        assert contexts == {"source", "target", "selection", "report"}
    assert seeds == {"0", "1"}  # each trial says which seed it is
    (parent,) = found["sweep"]
    params, metrics = by_key(parent["data"]["params"]), by_key(parent["data"]["metrics"])
    assert params["sweep.replicates"] == "2"
    assert {"best_config/val/miou_mean", "best_config/report/miou_mean", "best_config/n_seeds",
            "best_trial/val/miou", "best_trial/report/miou"} <= set(metrics)
    assert not any(k.startswith("best/") for k in metrics)
    (retrain,) = found["retrain"]
    metrics = by_key(retrain["data"]["metrics"])
    assert metrics["best_config/val/miou_mean"] == by_key(parent["data"]["metrics"])["best_config/val/miou_mean"]
    assert {"confirm/report/miou_mean", "confirm/val/miou_mean", "confirm/n_seeds"} <= set(metrics)


@pytest.mark.ray_sweep
def test_champion_model_holds_its_final_metrics_and_its_registered_version(retrained: dict[str, Any]) -> None:
    api = retrained["api"]
    version = get(api, "registered-models/alias", name="simtune-space", alias="champion")["model_version"]
    model_id = version["source"].removeprefix("models:/")
    model = get(api, f"logged-models/{model_id}")["model"]
    assert model["info"]["source_run_id"] == version["run_id"]  # the seed run that trained and logged it
    metrics = {m["key"]: m for m in model["data"]["metrics"]}
    seed_run = get(api, "runs/get", run_id=version["run_id"])["run"]
    run_dir = RunDir(Path(by_key(seed_run["data"]["tags"])["simtune.run_dir"]))
    stage, final = run_dir.last_evaluation() or ("", {})
    assert stage == "stage2"
    for key in ("val/miou", "report/miou", "val/iou/road"):  # the final stage's numbers, not stage 0's
        assert (metrics[key]["value"], int(metrics[key]["step"])) == (pytest.approx(final[key]), final["step"])
    assert json.loads(by_key(model["info"]["tags"])["mlflow.modelVersions"]) == [
        {"name": "simtune-space", "version": int(version["version"])}]
    (retrain,) = runs(api, model["info"]["experiment_id"], "tags.`simtune.role` = 'retrain'")
    assert [o["model_id"] for o in retrain["outputs"]["model_outputs"]] == [model_id]  # the parent links it
