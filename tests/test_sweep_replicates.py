"""Sweeps with replicates through the real CLI: paired seeds, configuration results, verdicts.

Every trial runs the real pipeline on the tiny benchmark (stage 1 = 4 iterations, stage 2 =
2); helpers come from test_sweep.py.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simtune import config
from simtune.cli import main
from simtune.errors import SearchSpaceError
from simtune.sweep.space import load_space, override_settings
from test_sweep import run_sweep, summary_of, write_space

QUANTILES = [0.3, 0.6]  # stage-2 values: configurations with the same seed share stage 1


def test_grid_with_two_replicates_end_to_end(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = write_space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"grid": QUANTILES}}, replicates=2)
    proc = run_sweep(space, tmp_path / "sweeps", "rep", "--set", "seed=7")
    sweep_dir = tmp_path / "sweeps" / "rep"
    summary = summary_of(sweep_dir)
    trials = {t["trial_id"]: t for t in summary["trials"]}
    assert len(trials) == 4 and summary["counts"]["finished"] == 4 and summary["replicates"] == 2
    # Common random numbers: both configurations ran with seeds 7 and 8, and the run dirs agree.
    configs = summary["configs"]
    assert sorted(c["params"]["pseudo_label.quantile"] for c in configs) == QUANTILES
    for c in configs:
        assert c["n"] == 2 and c["seeds"] == [7, 8] and c["trained_to_end"]
        seeds = sorted(config.load(sweep_dir / "runs" / t / "config.yaml").seed for t in c["trial_ids"])
        assert seeds == [7, 8]
        values = [trials[t]["metrics"]["val/miou"] for t in c["trial_ids"]]
        assert c["mean"] == pytest.approx(statistics.fmean(values))
        assert c["std"] == pytest.approx(statistics.stdev(values))
        assert c["report/miou"]["n"] == 2
    assert [c["rank"] for c in configs] == [1, 2] and configs[0]["mean"] >= configs[1]["mean"]
    assert summary["best"]["trial_id"] in configs[0]["trial_ids"]
    best_cfg = config.load(sweep_dir / "best_config.yaml")
    assert best_cfg.pseudo_label.quantile == configs[0]["params"]["pseudo_label.quantile"] and best_cfg.seed == 7
    # The final table, the summary and the report all state the verdict.
    verdict = summary["verdict"]
    assert verdict["n"] == 2 and verdict["line"].startswith("Verdict: best ")
    assert verdict["line"].endswith("within noise") == (verdict["beyond_noise"] is False)
    assert verdict["line"] in proc.stdout and "Ranking reproducibility: " in proc.stdout
    assert main(["report", "--storage", str(tmp_path / "sweeps"), "--sweep", "rep"]) == 0
    text = (sweep_dir / "report" / "summary.md").read_text()
    assert verdict["line"] in text and summary["reproducibility"]["line"] in text
    assert summary["reproducibility"]["half_size"] == 1 and summary["reproducibility"]["configs"] == 2
    assert "error bars: std over replicates, n = 2 per point" in text
    assert "| 1 | " in text and "| 7, 8 |" in text  # the configurations table
    _check_configuration_runs(sweep_dir, configs)


def _check_configuration_runs(sweep_dir: Path, configs: list[dict[str, object]]) -> None:
    """MLflow holds one run per configuration whose val/miou is the mean over replicates."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{sweep_dir}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("simtune")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`simtune.role` = 'configuration'")
    assert len(runs) == len(configs)
    by_rank = {int(r.data.tags["simtune.config_rank"]): r for r in runs}
    for c in configs:
        run = by_rank[int(str(c["rank"]))]
        assert run.data.metrics["val/miou"] == pytest.approx(float(str(c["mean"])))
        assert run.data.metrics["replicates"] == 2
        assert float(run.data.params["pseudo_label.quantile"]) == c["params"]["pseudo_label.quantile"]  # type: ignore[index]


def test_optuna_with_replicates_repeats_each_proposal_with_the_same_seeds(tmp_path: Path,
                                                                          tiny_bench: tuple[Path, Path]) -> None:
    space = write_space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"uniform": [0.2, 0.8]}}, num_samples=2,
                        search={"algorithm": "optuna", "seed": 0}, replicates=2)
    proc = run_sweep(space, tmp_path / "sweeps", "opt")
    summary = summary_of(tmp_path / "sweeps" / "opt")
    assert summary["counts"]["total"] == 4 and summary["counts"]["finished"] == 4
    assert len(summary["configs"]) == 2  # two proposals, each run twice
    base_seed = load_space(space).base_config.seed
    for c in summary["configs"]:
        assert c["n"] == 2 and c["seeds"] == [base_seed, base_seed + 1]
        replicas = [t for t in summary["trials"] if t["trial_id"] in c["trial_ids"]]
        assert sorted(t["replicate"] for t in replicas) == [0, 1]
    assert summary["verdict"]["line"] in proc.stdout


def test_replicates_setting_is_validated_and_overridden(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"grid": QUANTILES}}, replicates=3)
    loaded = load_space(space)
    assert loaded.replicates == 3 and override_settings(loaded, replicates=2).replicates == 2
    assert [loaded.config_for({"pseudo_label.quantile": 0.3, "__trial_index__": k}).seed for k in range(3)] == [
        loaded.base_config.seed + k for k in range(3)]
    with pytest.raises(SearchSpaceError, match="--replicates' must be an integer >= 1, got 0"):
        override_settings(loaded, replicates=0)
    bad = write_space(tmp_path / "seed", tiny_bench, {"seed": {"grid": [0, 1]}}, replicates=2)
    with pytest.raises(SearchSpaceError, match="params.seed: cannot be swept with replicates 2"):
        load_space(bad)
    body = yaml.safe_load(space.read_text())
    body["replicates"] = "two"
    space.write_text(yaml.safe_dump(body))
    assert main(["validate", str(space)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'replicates' must be an integer >= 1, got 'two'" in err and "\n" not in err
