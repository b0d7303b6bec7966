"""``simtune retrain`` and ``simtune report``: on hand-written run directories (fast) and on a
tiny real sweep run through the ``simtune sweep`` CLI (slow)."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simtune import config
from simtune.cli import main
from simtune.errors import ConfigError
from simtune.workflows.report import build_report
from simtune.results.summary import Summary, TrialSummary, write_summary
from simtune.results.sweepdir import find_sweep
from simtune.results.trials import load_trials, rank_trials
from simtune.search.replicates import fresh_seeds
from simtune.tracking import naming
from simtune.workflows.retrain import retrain_best
from simtune.workflows.retrain_seeds import scale_iters
from simtune.testing import SYNTHETIC_EXPERIMENT, simtune, tiny_benchmark, tiny_overrides, write_trial


# ----------------------------------------------------------------------------- hand-written sweeps


def test_best_trial_is_chosen_by_its_last_evaluation_not_its_best_ever(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    write_trial(sweep, "a", [50.0, 10.0])  # best-ever 50, last 10
    write_trial(sweep, "b", [20.0, 30.0])
    write_trial(sweep, "c", [99.0], finished=False)  # never finished: not a candidate
    ranked = rank_trials(load_trials(sweep))
    assert [t.trial_id for t in ranked] == ["b", "a"]
    assert ranked[0].final["val/miou"] == 30.0 and ranked[0].final["report/miou"] == 31.0


def test_most_recent_sweep_is_the_default_and_unknown_names_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = tmp_path / "sweeps"
    write_trial(storage / "old", "a", [1.0])
    write_trial(storage / "new", "a", [1.0])
    (storage / "new" / "summary.json").write_text("{}")
    assert find_sweep(storage, None).name == "new"
    with pytest.raises(ConfigError, match="no sweep 'nope'.*new, old"):
        find_sweep(storage, "nope")
    assert main(["report", "--storage", str(storage), "--sweep", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simtune report: error: no sweep 'nope'") and "\n" not in err


def test_iters_scale_multiplies_iterations_schedules_and_eval_period() -> None:
    cfg = config.build({"stage1": {"iters": 600, "schedule_iters": 600}, "stage2": {"iters": 300},
                        "eval": {"every": 300}})
    scaled = scale_iters(cfg, 0.1)
    assert (scaled.stage1.iters, scaled.stage1.schedule_iters) == (60, 60)
    assert (scaled.stage2.iters, scaled.stage2.schedule_iters, scaled.eval.every) == (30, 25_000, 30)
    assert scaled.stage1.lambda_ci == cfg.stage1.lambda_ci


def test_retrain_rejects_bad_arguments_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--seeds must be >= 1, but got 0"):
        retrain_best(storage=tmp_path, seeds=0)


def test_retrain_never_reuses_a_seed_the_sweep_selected_on(tmp_path: Path) -> None:
    """Fresh seeds start one past the sweep's largest; --seeds-from into the sweep's seeds is refused
    before anything is trained or logged."""
    sweep = tmp_path / "s"
    for seed in (0, 1):
        write_trial(sweep, f"a_{seed}", [30.0, 31.0 + seed], lambda_ci=0.01, seed=seed)
    assert fresh_seeds([0, 1], 3) == [2, 3, 4]
    assert fresh_seeds([0, 1], 2, first=10) == [10, 11]
    with pytest.raises(ConfigError, match="--seeds-from 1: seeds 1-3 include seed"):
        retrain_best(storage=tmp_path, seeds=3, seeds_from=1)
    assert not (sweep / "retrain").exists() and not (tmp_path / "mlflow.db").exists()
    with pytest.raises(ConfigError, match="--iters-scale must be > 0"):
        retrain_best(storage=tmp_path, iters_scale=0)


def test_report_of_hand_written_sweep_has_tables_importance_and_class_iou(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    grid = [(lam, w) for lam in (0.001, 0.01, 0.1) for w in (10, 50)]
    for index, (lam, w) in enumerate(grid):
        for seed in (0, 1):  # two repeats per point: the tables show a spread
            score = 40 - 5 * abs(np.log10(lam) + 2) - abs(w - 50) / 10 + seed
            write_trial(sweep, f"t{index}_{seed}", [score - 3, score], lambda_ci=lam, bank_size=w, seed=seed)
    report = build_report(sweep)
    names = {p.name for p in report.files}
    assert names == {"table3_stage1.lambda_ci.png", "table4_stage1.bank_size.png", "importance.png",
                     "best_class_iou.png", "summary.md"}
    assert report.best is not None and report.best.params["stage1.lambda_ci"] == 0.01
    assert report.best.params["stage1.bank_size"] == 50
    text = (sweep / "report" / "summary.md").read_text()
    assert "## Table 3 form: mIoU vs `stage1.lambda_ci` (stage1.bank_size = 50" in text
    assert "| 0.01 | 40.50 ± 0.71 | 41.50 ± 0.71 | 2 |" in text  # mean ± std over the two seeds
    assert "| road |" in text and "## Parameter importance" in text
    assert any("not attached to MLflow" in note for note in report.notes)
    # Both seeds order the six configurations alike, but two seeds of six cannot reach p < 0.05.
    assert "Against seed noise: **no configuration differs beyond seed noise (Friedman chi2 = " in text
    assert "cannot reach p < 0.05 whatever the results" in text and "importances may rank noise" in text


def test_report_says_the_configurations_differ_when_every_seed_agrees(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    for index, lam in enumerate((0.001, 0.01, 0.1, 1.0)):
        for seed in (0, 1, 2):  # every seed orders the four configurations alike, seed effects aside
            score = 30 + 2 * index + 5 * seed
            write_trial(sweep, f"t{index}_{seed}", [score - 3, score], lambda_ci=lam, seed=seed)
    text = (build_report(sweep).out_dir / "summary.md").read_text()
    # chi2 = 12 / (3 * 4 * 5) * (3^2 + 6^2 + 9^2 + 12^2) - 3 * 3 * 5 = 9 with df 3: p = 0.029
    assert ("Against seed noise: the configurations differ beyond seed noise (Friedman chi2 = 9.00, p = 0.029; "
            "4 configurations × 3 seeds).") in text


# ----------------------------------------------------------------------------- a tiny real sweep


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2 x 2 grid over lambda_ci and bank_size, real pipeline, 6 iterations per trial."""
    tmp = tmp_path_factory.mktemp("tiny")
    bench = tiny_benchmark(tmp / "bench")
    space = tmp / "space.yaml"
    space.write_text(f"base: {SYNTHETIC_EXPERIMENT}\nsearch: {{algorithm: grid}}\n"
                     "resources: {cpus: 1}\nmax_concurrent: 2\nparams:\n"
                     "  stage1.lambda_ci: {grid: [0.001, 0.01]}\n  stage1.bank_size: {grid: [10, 50]}\n")
    sets = [f"--set={s}" for s in tiny_overrides(*bench)]
    done = simtune("sweep", str(space), "--name", "tiny", "--storage", "sweeps", *sets, cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "database is locked" not in done.stdout + done.stderr
    from mlflow import MlflowClient

    uri = printed_store(done.stdout)
    assert uri == f"sqlite:///{tmp}/sweeps/mlflow.db"  # one store for the folder of sweeps
    return {"dir": tmp, "uri": uri, "client": MlflowClient(uri, registry_uri=uri)}


def printed_store(stdout: str) -> str:
    """The store of the ``simtune ui --storage DIR`` line a command ends with: ``DIR/mlflow.db``.

    The line calls simtune as this process was called (here ``python -m simtune.cli``), so it runs
    without an activated virtualenv."""
    words = shlex.split(stdout.strip().splitlines()[-1])
    assert words[:-3] == [sys.executable, "-m", "simtune.cli"] and words[-3:-1] == ["ui", "--storage"], words
    return f"sqlite:///{words[-1]}/mlflow.db"


def runs_by_role(client: Any, role: str) -> list[Any]:
    experiment = client.get_experiment_by_name("space")  # named after the search-space file
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`simtune.role` = '{role}'")


def contexts(run: Any) -> set[str]:
    return {tag.value for i in run.inputs.dataset_inputs for tag in i.tags if tag.key == "mlflow.data.context"}


@pytest.mark.ray_sweep
def test_real_sweep_is_one_parent_with_a_child_per_trial(tiny_sweep: dict[str, Any]) -> None:
    client = tiny_sweep["client"]  # reached through the URI the sweep printed
    (parent,) = runs_by_role(client, "sweep")
    assert parent.info.run_name == "tiny" and parent.data.tags["simtune.sweep"] == "tiny"
    trials = runs_by_role(client, "trial")
    assert len(trials) == 4 and {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    summary = json.loads((tiny_sweep["dir"] / "sweeps" / "tiny" / "summary.json").read_text())
    assert {t.info.run_name for t in trials} == {
        f"λ_ci={t['params']['stage1.lambda_ci']} w={t['params']['stage1.bank_size']} · {t['trial_id'][-5:]}"
        for t in summary["trials"]}
    assert parent.data.tags["simtune.best_trial_id"] == summary["best"]["trial_id"]
    # The parent's params are the search space and the fixed changes, not base values of swept keys.
    assert parent.data.params["stage1.lambda_ci"] == "grid [0.001, 0.01]"
    assert parent.data.params["stage1.bank_size"] == "grid [10, 50]" and parent.data.params["stage1.iters"] == "4"
    assert contexts(parent) == {"source", "target", "selection", "report"}
    for run in trials:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/miou")] == [2, 4, 6]
        assert {"report/miou", "val/iou/car", "report/iou/road", "stage"} <= set(run.data.metrics)
        assert "iteration" not in run.data.metrics  # it is the step
        assert run.data.params["stage1.lambda_ci"] in ("0.001", "0.01") and run.data.params["model.backbone"] == "small"
        assert contexts(run) == {"source", "target", "selection", "report"}
        assert run.data.tags["mlflow.source.name"].startswith("simtune sweep") and run.data.tags["mlflow.user"]
    best = next(t for t in trials if t.data.tags["simtune.trial_id"] == summary["best"]["trial_id"])
    arts = {a.path for folder in ("figures", "pseudo", "checkpoint/stage2", "run")
            for a in client.list_artifacts(best.info.run_id, folder)}
    assert {"figures/miou_curve.png", "figures/class_iou.png", "figures/predictions.png", "pseudo/thresholds.json",
            "checkpoint/stage2/model.pt", "run/config.yaml"} <= arts
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")} >= {
        "sweep/space.yaml", "sweep/summary.json", "sweep/best_config.yaml", "sweep/base_config.yaml"}


@pytest.mark.ray_sweep
def test_retrain_registers_a_version_and_a_second_retrain_moves_champion(tiny_sweep: dict[str, Any]) -> None:
    import mlflow

    tmp, client = tiny_sweep["dir"], tiny_sweep["client"]
    done = simtune("retrain", "--best", "--seeds", "2", "--compare-runner-up", cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LAST evaluation" in done.stdout and "@champion" in done.stdout
    assert printed_store(done.stdout) == tiny_sweep["uri"]
    (parent,) = runs_by_role(client, "retrain")
    (sweep_parent,) = runs_by_role(client, "sweep")
    assert parent.data.tags["simtune.sweep_parent_run_id"] == sweep_parent.info.run_id
    assert parent.info.run_name.startswith("retrain · λ_ci=")
    seeds = runs_by_role(client, "retrain_seed")
    assert len(seeds) == 4 and {s.data.tags["mlflow.parentRunId"] for s in seeds} == {parent.info.run_id}
    best = [s for s in seeds if s.data.tags["simtune.candidate"] == "best"]
    # The sweep trained seed 0 only: the confirmation runs the fresh seeds 1 and 2.
    assert sorted(s.data.params["seed"] for s in best) == ["1", "2"]
    assert sorted(s.info.run_name.split(" · ")[0] for s in best) == ["seed 1", "seed 2"]
    assert "fresh seeds 1, 2" in done.stdout and "Confirmation: val/miou" in done.stdout
    assert "best_config/val/miou_mean" in parent.data.metrics
    assert all(contexts(s) == {"source", "target", "selection", "report"} for s in [parent, *seeds])
    values = [s.data.metrics["report/miou"] for s in best]
    assert parent.data.metrics["confirm/report/miou_mean"] == pytest.approx(np.mean(values))
    assert parent.data.metrics["confirm/report/miou_std"] == pytest.approx(np.std(values, ddof=1))
    assert "confirm_runner_up/report/miou_mean" in parent.data.metrics
    runner_up = [s for s in seeds if s.data.tags["simtune.candidate"] == "runner_up"]
    assert sorted(s.data.params["seed"] for s in runner_up) == ["1", "2"]  # the same seeds: paired
    assert "Verdict: best " in done.stdout and "(paired, n = 2)" in parent.data.tags["simtune.verdict"]
    assert {"loss/seg_src", "lr"} <= set(best[0].data.metrics)  # losses logged live during retraining
    note = parent.data.tags["mlflow.note.content"]
    assert f"runs/{sweep_parent.info.run_id}?" in note and "#/models/simtune-space/versions/1?" in note
    # The description says it all, as it renders: fresh seeds, the confirmation and verdicts in full, the model.
    confirmation = next(line for line in done.stdout.splitlines() if line.startswith("Confirmation: "))
    assert naming.plain(confirmation) in note and "on 2 fresh seeds: 1, 2" in note
    assert "registered as `simtune-space` version 1, alias `champion`" in note
    assert "Verdict: best" in note.replace("\\", "") and not naming.GH_MENTION.search(note.replace("\\@", ""))
    assert note.count("\n- [") == 4  # sweep, best and runner-up trials, model: one link a line
    assert parent.data.params["n_fresh_seeds"] == "2" and parent.data.params["fresh_seeds"] == "1, 2"
    assert parent.data.params["registered_model"] == "simtune-space version 1" and "seeds" not in parent.data.params
    first = client.get_model_version_by_alias("simtune-space", "champion")
    assert str(first.version) == "1" and first.run_id in {s.info.run_id for s in best}  # the seed run that owns it
    # A second retrain (its seed runs are reused) adds version 2: @champion moves, @previous keeps version 1.
    again = simtune("retrain", "--best", "--seeds", "2", cwd=tmp)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "@previous is version 1" in again.stdout
    assert str(client.get_model_version_by_alias("simtune-space", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("simtune-space", "previous").version) == "1"
    mlflow.set_tracking_uri(tiny_sweep["uri"])
    model = mlflow.pyfunc.load_model("models:/simtune-space@champion")
    logits = model.predict(np.zeros((1, 3, 96, 192), dtype=np.float32))
    assert logits.shape[:2] == (1, 19)


@pytest.mark.ray_sweep
def test_report_of_real_sweep_writes_figures_and_attaches_them(tiny_sweep: dict[str, Any]) -> None:
    tmp, client = tiny_sweep["dir"], tiny_sweep["client"]
    done = simtune("report", "--sweep", "tiny", cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp / "sweeps" / "tiny" / "report"
    for name in ("table3_stage1.lambda_ci.png", "table4_stage1.bank_size.png", "best_class_iou.png", "summary.md"):
        assert (out / name).is_file(), name
    (parent,) = runs_by_role(client, "sweep")
    attached = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/summary.md", "report/table3_stage1.lambda_ci.png"} <= attached
    assert "attached to MLflow run" in done.stdout
    assert printed_store(done.stdout) == tiny_sweep["uri"]


def test_one_ranking_rule_puts_stopped_trials_after_finished_ones_and_never_ranks_failures(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    write_trial(sweep, "a", [10.0])
    write_trial(sweep, "b", [90.0], finished=False)  # stopped early by the scheduler (summary.json says so)
    write_trial(sweep, "c", [5.0])
    write_trial(sweep, "d", [99.0], finished=False)  # diverged
    (sweep / "runs" / "d" / "failure.json").write_text(json.dumps({"reason": "loss/seg_src became nan"}))
    write_trial(sweep, "e", [95.0], finished=False)  # still running when the sweep was interrupted
    stopped = TrialSummary(trial_id="b", status="TERMINATED", params={}, replicate=0, seed=0, metrics={},
                           iteration=1, stopped_early=True, failure_reason=None, failures=0, starts=1,
                           run_dir=str(sweep / "runs" / "b"))
    write_summary(sweep, dataclasses.replace(Summary.empty(sweep), trials=[stopped]))  # as the sweep wrote it
    assert [t.trial_id for t in rank_trials(load_trials(sweep))] == ["a", "c", "b"]
    assert [t.trial_id for t in rank_trials(load_trials(sweep), mode="min")] == ["c", "a", "b"]
