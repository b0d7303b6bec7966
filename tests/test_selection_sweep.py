"""Selecting by a label-free validator, end to end through the real CLI: sweep, MLflow, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from simtune.rundir import RunDir
from simtune.cli import main
from simtune.testing import SYNTHETIC_EXPERIMENT, simtune, write_tiny_space


@pytest.fixture(scope="module")
def entropy_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_bench: tuple[Path, Path]) -> Path:
    """A 2-trial grid selected by select/entropy, run through ``simtune sweep``; lambda_ci 0.01 is the
    base config's value (the default), and the validators are on only because the metric needs them."""
    folder = tmp_path_factory.mktemp("select_sweep")
    space = write_tiny_space(folder, tiny_bench, metric="select/entropy", mode="max",
                        search={"algorithm": "grid"},
                        scheduler={"type": "fifo"},
                        params={"stage1.lambda_ci": {"grid": [0.01, 0.5]}})
    proc = simtune("sweep", str(space), "--storage", str(folder / "sweeps"), "--name", "ent", cwd=folder, timeout=600)
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
        assert {"select/entropy", "select/im", "select/snd", "select/mixval"} <= logged
        assert "select/dev" not in logged  # the metric does not need DEV: its cheapest correct subset
        history = client.get_metric_history(run.info.run_id, "select/entropy")
        assert len(history) >= 2  # every evaluation, not just the last


@pytest.mark.ray_sweep
def test_report_holds_the_trust_table(entropy_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scipy import stats as scipy_stats

    assert main(["report", "--storage", str(entropy_sweep.parent), "--sweep", "ent"]) == 0
    printed = capsys.readouterr().out
    summary = (entropy_sweep / "report" / "summary.md").read_text()
    trust = (entropy_sweep / "report" / "trust.md").read_text()
    assert trust.strip() in summary and "val/miou (oracle, uses val labels)" in trust
    assert (entropy_sweep / "report" / "validators.png").is_file()
    # Recomputed from the run directories: select/entropy picks the trial with the highest last select/entropy;
    # the default is lambda_ci 0.01 (the base config); one seed, so no interval and no verdict.
    runs = {RunDir(run).config().stage1.lambda_ci: RunDir(run).records() for run in (entropy_sweep / "runs").iterdir()}
    pick = max(runs, key=lambda lam: runs[lam][-1]["select/entropy"])
    oracle = max(runs, key=lambda lam: runs[lam][-1]["val/miou"])
    row = next(line for line in trust.splitlines() if line.startswith("| select/entropy | λ_ci="))
    assert row.startswith(f"| select/entropy | λ_ci={pick:g} | {runs[pick][-1]['report/miou']:.2f} | "
                          f"{runs[oracle][-1]['report/miou']:.2f} (λ_ci={oracle:g}) | "
                          f"{runs[0.01][-1]['report/miou']:.2f} (λ_ci=0.01) |")
    assert "noise unknown (one seed)" in row
    # Within runs: Spearman of select/im and report mIoU over each run's evaluations, averaged over runs.
    rhos = [scipy_stats.spearmanr([e["select/im"] for e in evals], [e["report/miou"] for e in evals])[0]
            for evals in runs.values()]
    known = [r for r in rhos if r == r]
    spearman_row = [line for line in trust.splitlines() if line.startswith("| select/im |")][1]
    cells = [cell.strip() for cell in spearman_row.strip("|").split("|")]
    assert cells[3] == (f"{sum(known) / len(known):+.2f}" if known else "-") and cells[5] == "2"
    assert "label-free selection (last iteration, report mIoU" in printed and "select/entropy" in printed
    # The sweep's MLflow parent run carries the same table, through the report folder it logs.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{entropy_sweep.parent}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(experiments, filter_string="tags.`simtune.role` = 'sweep'")
    attached = client.download_artifacts(parent.info.run_id, "report/trust.md", str(entropy_sweep / "dl"))
    assert Path(attached).read_text() == trust


def test_space_rejects_unknown_or_minimised_validators(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    params = {"stage1.lambda_ci": {"grid": [0.01]}}
    bad_name = write_tiny_space(tmp_path / "a", tiny_bench, metric="select/entropi", params=params)
    assert main(["validate", str(bad_name)]) == 2
    err = capsys.readouterr().err
    assert "select/entropi" in err and "select/entropy" in err
    minimised = write_tiny_space(tmp_path / "b", tiny_bench, metric="select/snd", mode="min", params=params)
    assert main(["validate", str(minimised)]) == 2
    assert "higher = better" in capsys.readouterr().err
    off = write_tiny_space(tmp_path / "c", tiny_bench, metric="select/im", params=params)
    assert main(["validate", str(off), "--set", "select.enabled=false"]) == 2  # said explicitly: not overridden
    assert "select.enabled" in capsys.readouterr().err


def test_validators_are_computed_only_when_needed(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    from simtune.config import load
    from simtune.search.parse import load_space

    assert not load(SYNTHETIC_EXPERIMENT).select.enabled  # off by default: +~20% per evaluation
    params = {"stage1.lambda_ci": {"grid": [0.01]}}
    by_validator = load_space(write_tiny_space(tmp_path / "a", tiny_bench, metric="select/im", params=params))
    select = by_validator.config_for({"stage1.lambda_ci": 0.01}).select
    assert select.enabled and select.source_images == 0  # no DEV: select/im does not need it
    by_dev = load_space(write_tiny_space(tmp_path / "d", tiny_bench, metric="select/dev", params=params))
    assert by_dev.config_for({"stage1.lambda_ci": 0.01}).select.source_images >= 2
    by_oracle = load_space(write_tiny_space(tmp_path / "b", tiny_bench, params=params))
    assert not by_oracle.config_for({"stage1.lambda_ci": 0.01}).select.enabled
    asked = load_space(write_tiny_space(tmp_path / "c", tiny_bench, params=params), ["select.enabled=true"])
    assert asked.config_for({"stage1.lambda_ci": 0.01}).select.enabled
