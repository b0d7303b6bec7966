"""Selecting by a label-free validator, end to end through the real CLI: sweep, MLflow, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simtune.rundir import RunDir
from simtune.cli import main
from simtune.testing import SYNTHETIC_EXPERIMENT, tiny_overrides


def write_space(folder: Path, tiny_bench: tuple[Path, Path], **settings: Any) -> Path:
    tiny = dict(text.split("=", 1) for text in tiny_overrides(*tiny_bench))
    body = {"base": str(SYNTHETIC_EXPERIMENT), "set": {k: yaml.safe_load(v) for k, v in tiny.items()},
            "max_concurrent": 2, **settings}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def entropy_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_bench: tuple[Path, Path]) -> Path:
    """A 2-trial grid selected by select/entropy, run through ``simtune sweep``."""
    folder = tmp_path_factory.mktemp("select_sweep")
    space = write_space(folder, tiny_bench, metric="select/entropy", mode="max",
                        search={"algorithm": "grid"},
                        scheduler={"type": "fifo"},
                        params={"stage1.lambda_ci": {"grid": [0.001, 0.5]}})
    proc = subprocess.run([sys.executable, "-m", "simtune.cli", "sweep", str(space), "--storage",
                           str(folder / "sweeps"), "--name", "ent"], capture_output=True, text=True,
                          timeout=600, cwd=folder)
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return folder / "sweeps" / "ent"


def last_evaluation(run_dir: Path) -> dict[str, float]:
    last = RunDir(run_dir).last_evaluation()
    assert last is not None, f"{run_dir}: no history"
    return dict(last[1])


@pytest.mark.ray_sweep
def test_sweep_selects_by_a_validator(entropy_sweep: Path) -> None:
    summary = json.loads((entropy_sweep / "summary.json").read_text())
    assert summary["metric"] == "select/entropy"
    finals = {run.name: last_evaluation(run) for run in (entropy_sweep / "runs").iterdir()}
    assert len(finals) == 2
    for final in finals.values():
        assert -1e-9 >= final["select/entropy"] >= -3.0  # minus an entropy over 19 classes (log 19 = 2.94)
        assert 0.0 <= final["select/mixval"] <= 1.0
    trials = {t["trial_id"]: t for t in summary["trials"]}
    best = summary["best"]["trial_id"]
    assert best == max(trials, key=lambda tid: finals[tid]["select/entropy"])
    assert trials[best]["metrics"]["select/entropy"] == finals[best]["select/entropy"]
    assert summary["ranking"] == sorted(trials, key=lambda tid: -finals[tid]["select/entropy"])
    best_config = yaml.safe_load((entropy_sweep / "best_config.yaml").read_text())
    assert best_config["stage1"]["lambda_ci"] == summary["best"]["params"]["stage1.lambda_ci"]


@pytest.mark.ray_sweep
def test_every_trial_logs_select_metrics_to_mlflow(entropy_sweep: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{entropy_sweep.parent}/mlflow.db")  # one store per folder of sweeps
    experiments = [e.experiment_id for e in client.search_experiments()]
    trials = [r for r in client.search_runs(experiments) if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2
    for run in trials:
        logged = {k for k in run.data.metrics if k.startswith("select/")}
        assert {"select/entropy", "select/im", "select/snd", "select/mixval", "select/dev"} <= logged
        history = client.get_metric_history(run.info.run_id, "select/entropy")
        assert len(history) >= 2  # every evaluation, not just the last


@pytest.mark.ray_sweep
def test_report_holds_the_trust_table(entropy_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--storage", str(entropy_sweep.parent), "--sweep", "ent"]) == 0
    summary = (entropy_sweep / "report" / "summary.md").read_text()
    assert "select/entropy" in summary and "Spearman" in summary and "Kendall" in summary and "regret" in summary
    assert "val/miou (oracle" in summary
    assert (entropy_sweep / "report" / "validators.png").is_file()


def test_space_rejects_unknown_or_minimised_validators(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    params = {"stage1.lambda_ci": {"grid": [0.01]}}
    bad_name = write_space(tmp_path / "a", tiny_bench, metric="select/entropi", params=params)
    assert main(["validate", str(bad_name)]) == 2
    err = capsys.readouterr().err
    assert "select/entropi" in err and "select/entropy" in err
    minimised = write_space(tmp_path / "b", tiny_bench, metric="select/snd", mode="min", params=params)
    assert main(["validate", str(minimised)]) == 2
    assert "higher = better" in capsys.readouterr().err
    off = write_space(tmp_path / "c", tiny_bench, metric="select/im", params=params)
    assert main(["validate", str(off), "--set", "select.enabled=false"]) == 2
    assert "select.enabled" in capsys.readouterr().err
