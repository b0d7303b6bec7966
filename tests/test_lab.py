"""A sweep the size of a lab: one MLflow store wherever a command runs, against a real
``mlflow server`` over HTTP with its own backend and artifact store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlflow_http_server
from simtune.errors import TrackingError
from simtune.testing import write_tiny_space
from simtune.tracking.store import sweep_store


def simtune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simtune.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def test_the_recorded_store_wins_and_another_is_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    assert sweep_store(sweep, None) == f"sqlite:///{tmp_path / 'sweeps' / 'mlflow.db'}"  # not started: the default
    sweep.mkdir(parents=True)
    (sweep / "tracking.json").write_text(json.dumps({"tracking_uri": "http://lab:5000"}))
    assert sweep_store(sweep, None) == "http://lab:5000"
    assert sweep_store(sweep, "http://lab:5000") == "http://lab:5000"
    with pytest.raises(TrackingError) as refused:
        sweep_store(sweep, "sqlite:///elsewhere.db")
    assert str(refused.value).startswith("--tracking-uri sqlite:///elsewhere.db: sweep s logs to http://lab:5000")


@pytest.mark.ray_sweep
def test_sweep_retrain_report_all_land_on_the_tracking_server(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    from mlflow import MlflowClient

    space = write_tiny_space(tmp_path / "space", tiny_bench, {"stage1.lambda_ci": {"grid": [0.001, 0.01]}},
                             resources={"cpus": 1})
    with mlflow_http_server(tmp_path / "server") as url:
        done = simtune("sweep", str(space), "--name", "lab", "--storage", "sweeps", "--tracking-uri", url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        # Later commands name no store: they log where the sweep started.
        retrain = simtune("retrain", "--best", "--name", "lab", "--seeds", "1", cwd=tmp_path)
        assert retrain.returncode == 0, retrain.stderr[-3000:]
        report = simtune("report", "--name", "lab", cwd=tmp_path)
        assert report.returncode == 0, report.stderr[-3000:]
        wrong = simtune("retrain", "--best", "--name", "lab", "--tracking-uri", f"sqlite:///{tmp_path}/x.db",
                        cwd=tmp_path)
        assert wrong.returncode == 2 and wrong.stderr.strip().startswith(
            f"simtune retrain: error: --tracking-uri sqlite:///{tmp_path}/x.db: sweep lab logs to {url}")

        client = MlflowClient(url, registry_uri=url)
        (experiment,) = [e for e in client.search_experiments() if e.name == "space"]
        roles = [r.data.tags.get("simtune.role") for r in client.search_runs([experiment.experiment_id])]
        assert roles.count("sweep") == 1 and roles.count("trial") == 2 and roles.count("retrain") == 1
        (parent,) = [r for r in client.search_runs([experiment.experiment_id])
                     if r.data.tags.get("simtune.role") == "sweep"]
        assert any(a.path == "report" for a in client.list_artifacts(parent.info.run_id))
        assert client.get_model_version_by_alias("simtune-space", "champion") is not None
    assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "x.db").exists()  # no stray local store
