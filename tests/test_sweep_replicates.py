"""Sweeps with replicates through the real CLI: paired seeds, configuration results, verdicts.

Every trial runs the real pipeline on the tiny benchmark (stage 1 = 4 iterations, stage 2 =
2); helpers come from test_sweep.py.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import yaml

from simtune import config
from simtune.cli import main
from simtune.errors import SearchSpaceError
from simtune.stats import Spread
from simtune.results.ranking import (Replicate, RungStop, Standing, compare, group_configs, rank_configs,
                                     ranking_verdict, reproducibility, reproducibility_line,
                                     stopped_at_rungs)
from simtune.search.parse import load_space, override_settings
from simtune.search.replicates import config_key
from test_sweep import run_sweep, summary_of, write_space

QUANTILES = [0.3, 0.6]  # stage-2 values: configurations with the same seed share stage 1
LAMBDAS = [0.001, 0.01]  # Table 3's parameter


@pytest.mark.ray_sweep
def test_grid_with_two_replicates_end_to_end(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"grid": LAMBDAS}}, replicates=2)
    proc = run_sweep(space, tmp_path / "sweeps", "rep", "--set", "seed=7")
    sweep_dir = tmp_path / "sweeps" / "rep"
    summary = summary_of(sweep_dir)
    trials = {t["trial_id"]: t for t in summary["trials"]}
    assert len(trials) == 4 and summary["counts"]["finished"] == 4 and summary["replicates"] == 2
    # Common random numbers: both configurations ran with seeds 7 and 8, and the run dirs agree.
    configs = summary["configs"]
    assert sorted(c["params"]["stage1.lambda_ci"] for c in configs) == LAMBDAS
    for c in configs:
        assert c["n"] == 2 and c["seeds"] == [7, 8] and c["trained_to_end"]
        seeds = sorted(config.load(sweep_dir / "runs" / t / "config.yaml").seed for t in c["trial_ids"])
        assert seeds == [7, 8]
        values = [trials[t]["metrics"]["val/miou"] for t in c["trial_ids"]]
        assert c["mean"] == pytest.approx(statistics.fmean(values))
        assert c["std"] == pytest.approx(statistics.stdev(values))
        assert c["spreads"]["report/miou"]["n"] == 2
    assert [c["rank"] for c in configs] == [1, 2] and configs[0]["mean"] >= configs[1]["mean"]
    assert summary["best"]["trial_id"] in configs[0]["trial_ids"]
    best_cfg = config.load(sweep_dir / "best_config.yaml")
    assert best_cfg.stage1.lambda_ci == configs[0]["params"]["stage1.lambda_ci"] and best_cfg.seed == 7
    # The final table, the summary and the report all state the verdict.
    verdict = summary["verdict"]
    assert verdict["n"] == 2 and verdict["line"].startswith("Verdict: best ")
    assert verdict["line"].endswith("within noise") == (verdict["beyond_noise"] is False)
    assert verdict["line"] in proc.stdout and "Ranking reproducibility: " in proc.stdout
    assert main(["report", "--storage", str(tmp_path / "sweeps"), "--name", "rep"]) == 0  # --name, as simtune sweep
    text = (sweep_dir / "report" / "summary.md").read_text()
    assert verdict["line"] in text and summary["reproducibility"]["line"] in text
    assert summary["reproducibility"]["half_size"] == 1 and summary["reproducibility"]["configs"] == 2
    assert "## Table 3 form: mIoU vs `stage1.lambda_ci`" in text
    assert "error bars: std over replicates, n = 2 per point" in text
    assert "| 1 | " in text and "| 7, 8 |" in text  # the configurations table
    _check_configuration_runs(sweep_dir, configs)


def _check_configuration_runs(sweep_dir: Path, configs: list[dict[str, object]]) -> None:
    """MLflow holds one run per configuration whose val/miou is the mean over replicates."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep_dir.parent}/mlflow.db")  # one store per folder of sweeps
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`simtune.role` = 'configuration'")
    assert len(runs) == len(configs)
    by_rank = {int(r.data.tags["simtune.config_rank"]): r for r in runs}
    for c in configs:
        run = by_rank[int(str(c["rank"]))]
        assert run.data.metrics["config/val/miou_mean"] == pytest.approx(float(str(c["mean"])))
        assert run.data.metrics["config/n_seeds"] == 2
        assert run.data.metrics["config/val/miou_adjusted"] == pytest.approx(float(str(c["estimate"])))
        assert "trained to the end on every seed" in run.data.tags["mlflow.note.content"]  # how it ended
        assert float(run.data.params["stage1.lambda_ci"]) == c["params"]["stage1.lambda_ci"]  # type: ignore[index]


@pytest.mark.ray_sweep
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


# ----------------------------------------------------------------------------- the rule on configurations


def _replicate(trial_id: str, seed: int, value: float | None, *, completed: bool = True,
               failed: bool = False) -> Replicate:
    standing = Standing(value, completed and not failed, not completed and not failed)
    return Replicate(trial_id, seed, standing, {} if value is None else {"val/miou": value})


def test_configurations_are_judged_over_all_their_seeds() -> None:
    """A configuration's mean is over every seed, never over the seeds its outcome spared."""
    items = [({"w": 10}, _replicate("a0", 0, 10.0)), ({"w": 10}, _replicate("a1", 1, 30.0, completed=False)),
             ({"w": 10}, _replicate("a2", 0, 99.0)),  # seed 0 again (a repeated proposal): not counted
             ({"w": 50}, _replicate("b0", 0, 12.0)), ({"w": 50}, _replicate("b1", 1, 14.0)),
             ({"w": 90}, _replicate("c0", 0, 80.0, completed=False)), ({"w": 90}, _replicate("c1", 1, 60.0)),
             ({"w": 70}, _replicate("d0", 0, 50.0)), ({"w": 70}, _replicate("d1", 1, None, failed=True)),
             ({"w": 60}, _replicate("f0", 0, 40.0)),  # its seed 1 never ran
             ({"w": 30}, _replicate("e0", 0, 9.0, completed=False)), ({"w": 30}, _replicate("e1", 1, 1.0))]
    configs = group_configs(items, lambda item: item[0], lambda item: item[1], seeds=2)
    # w=30 was cut at rung 2 as a whole: judged by its mean there over both seeds.
    configs = stopped_at_rungs(configs, {config_key({"w": 30}): RungStop(2, "val/miou", {0: 5.0, 1: 7.0})})
    ranked = rank_configs(configs, "val/miou")
    assert [c.params["w"] for c in ranked] == [50, 90, 10, 30]  # complete first, then stopped, by mean
    best, stopped_90, stopped_10, cut = ranked
    assert best.completed and best.spread("val/miou") == Spread(n=2, mean=13.0, std=pytest.approx(math.sqrt(2.0)))
    assert [r.trial_id for r in stopped_10.replicates] == ["a0", "a1"] and stopped_10.trial_ids == ("a0", "a1", "a2")
    assert stopped_10.spread("val/miou").mean == 20.0  # both seeds; seed 0 alone (complete) would say 10
    assert not stopped_90.completed and stopped_90.stopped_early and stopped_90.n == 2
    assert cut.by_seed("val/miou") == {0: 5.0, 1: 7.0} and cut.by_seed("report/miou") == {} and not cut.completed
    unranked = {c.params["w"]: c for c in configs if c.params not in [r.params for r in ranked]}
    assert sorted(unranked) == [60, 70] and all(c.n == 0 for c in unranked.values())  # a seed failed or is missing
    # The best is the only complete one: no paired verdict against a runner-up stopped earlier.
    assert ranking_verdict(ranked, "val/miou").line == ("Verdict: only the best trained to the end; the runner-up "
                                                        "was stopped early, so they are not compared at equal length")
    assert "stopped early at iteration 2," in ranking_verdict([best, cut], "val/miou").line
    diff = compare(best, stopped_10, "val/miou")  # paired over both seeds
    assert diff is not None and (diff.n, diff.mean) == (2, -7.0)
    # Split-half reproducibility counts only the configuration trained to the end, and says so.
    assert reproducibility(ranked, "val/miou").n_configs == 1
    assert reproducibility_line(ranked, "val/miou").endswith(
        "; 3 configuration(s) stopped early by the scheduler not counted")


def test_retrain_verdict_pairs_the_seeds_both_candidates_finished(tmp_path: Path) -> None:
    from simtune.results.trials import TrialOutcome
    from simtune.workflows.retrain import Candidate, RetrainResult, SeedRun, verdicts

    trial = TrialOutcome("t", tmp_path, {}, {}, None, True, None)
    best, runner_up = Candidate("best", trial), Candidate("runner_up", trial)
    for seed, (a, b) in enumerate([(3.0, 1.0), (5.0, 2.0), (7.0, 4.0), (9.0, None)]):
        best.runs.append(SeedRun(seed, tmp_path, "r", {"report/miou": a, "val/miou": a}))
        runner_up.runs.append(SeedRun(seed, tmp_path, "r", {} if b is None else {"report/miou": b, "val/miou": b}))
    result = RetrainResult(tmp_path, "val/miou", "max", "", "", None, [best, runner_up])
    # seeds 0-2 pair (d = 2, 3, 3: mean 8/3, half-width 4.3027 / 3); seed 3 has no runner-up run
    assert verdicts(result) == [
        "Verdict: best beats runner-up by 2.67 ± 1.43 mIoU on report/miou (paired, n = 3): beyond noise",
        "Verdict: best beats runner-up by 2.67 ± 1.43 mIoU on val/miou (paired, n = 3): beyond noise"]
