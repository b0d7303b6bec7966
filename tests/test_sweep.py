"""Real sweeps on a real local Ray (and a real 2-node Ray cluster), through the real CLI.

Every trial runs the real pipeline for a few iterations on the tiny benchmark: stage 1 = 4
iterations, stage 2 = 2, an evaluation every 2, so a full trial reports iterations 2, 4, 6.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from simtune import config
from simtune.errors import EXIT_TRIALS_FAILED
from simtune.rundir import RunDir
from simtune.results.sweepdir import SweepDir
from simtune.results.trials import load_configs, load_trials, selection_rule
from simtune.testing import kill_group, simtune, simtune_command
from simtune.testing import write_tiny_space as write_space

from conftest import Cluster

FULL = 6  # iterations of a complete tiny trial (4 + 2)


# ----------------------------------------------------------------------------- helpers


def sweep_command(space: Path, storage: Path, name: str, *extra: str) -> list[str]:
    return simtune_command("sweep", str(space), "--storage", str(storage), "--name", name, *extra)


def run_sweep(space: Path, storage: Path, name: str, *extra: str, env: dict[str, str] | None = None,
              timeout: int = 600, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``simtune sweep`` in a subprocess; ``expect`` is its exit code (0: every trial finished)."""
    proc = simtune("sweep", str(space), "--storage", str(storage), "--name", name, *extra, cwd=storage.parent,
                   timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == expect, f"sweep ended {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def summary_of(sweep_dir: Path) -> dict[str, Any]:
    return json.loads((sweep_dir / "summary.json").read_text())


def by_param(summary: dict[str, Any], key: str) -> dict[Any, dict[str, Any]]:
    return {trial["params"][key]: trial for trial in summary["trials"]}


def tune_results(sweep_dir: Path, trial_id: str) -> list[dict[str, Any]]:
    """Every result Tune recorded for a trial, over all its attempts."""
    lines = (sweep_dir / f"trial_{trial_id}" / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def attempts(sweep_dir: Path, trial_id: str) -> list[dict[str, Any]]:
    path = sweep_dir / "runs" / trial_id / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# ----------------------------------------------------------------------------- sweeps


@pytest.mark.ray_sweep
def test_grid_sweep_end_to_end_shares_stage1(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = write_space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"grid": [0.3, 0.6]}})
    proc = run_sweep(space, tmp_path / "sweeps", "grid")
    sweep_dir = tmp_path / "sweeps" / "grid"
    assert "simtune sweep: shared stages: training 1 stage1 run(s) that several trials share" in proc.stderr
    summary = summary_of(sweep_dir)
    assert summary["counts"]["total"] == summary["counts"]["finished"] == 2 and summary["counts"]["failed"] == 0
    trials = by_param(summary, "pseudo_label.quantile")
    assert set(trials) == {0.3, 0.6}
    assert all(t["iteration"] == FULL and t["metrics"]["stage"] == 2 for t in trials.values())
    best = max(trials.values(), key=lambda t: t["metrics"]["val/miou"])  # selection split, last evaluation
    assert summary["best"]["trial_id"] == best["trial_id"]
    best_cfg = config.load(sweep_dir / "best_config.yaml")
    assert best_cfg.pseudo_label.quantile == best["params"]["pseudo_label.quantile"]
    assert best_cfg.stage1.iters == 4 and best_cfg.model.backbone == "small"
    assert "best config:" in proc.stdout and best["trial_id"] in proc.stdout
    # The global iteration grows over both stages; stage 1 ran once and was shared.
    for trial in trials.values():
        reported = tune_results(sweep_dir, trial["trial_id"])
        assert [(r["iteration"], r["stage"]) for r in reported] == [(2, 1), (4, 1), (6, 2)]
    # The shared stage 1 was trained first, as a job of its own: no trial waited for another.
    done = [json.loads(RunDir(Path(t["run_dir"])).done("stage1").read_text()) for t in trials.values()]
    assert all("from_cache" in d and d["waited_s"] < 5 for d in done)
    assert len([p for p in (sweep_dir / "stage1_cache").iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1
    assert [p.name.split("-")[0] for p in (sweep_dir / "shared").glob("stage*")] == ["stage1"]


@pytest.mark.ray_sweep
def test_optuna_with_asha_and_replicates_stops_whole_configurations(tmp_path: Path,
                                                                   tiny_bench: tuple[Path, Path]) -> None:
    """TPE proposes three configurations, each run with the same two seeds; ASHA keeps or stops
    each as a whole, and a stopped one is judged at its rung over both seeds."""
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"loguniform": [0.001, 0.1]}}, num_samples=3,
                        replicates=2, search={"algorithm": "optuna", "seed": 0},
                        scheduler={"type": "asha", "grace_period": 2, "reduction_factor": 2, "max_t": FULL})
    proc = run_sweep(space, tmp_path / "sweeps", "asha")
    sweep_dir = tmp_path / "sweeps" / "asha"
    summary = summary_of(sweep_dir)
    trials = {t["trial_id"]: t for t in summary["trials"]}
    assert len(trials) == 6 and summary["counts"]["failed"] == 0 and len(summary["configs"]) == 3
    assert summary["counts"]["stopped_early"] == sum(t["iteration"] < FULL for t in trials.values())
    stopped = [c for c in summary["configs"] if not c["trained_to_end"]]
    assert stopped, "ASHA stopped no configuration"
    for c in summary["configs"]:
        replicas = [trials[t] for t in c["trial_ids"]]
        assert c["n"] == 2 and sorted(t["replicate"] for t in replicas) == [0, 1]  # every seed, kept or stopped
        if c["trained_to_end"]:
            assert c["stopped_at"] is None and all(t["iteration"] == FULL for t in replicas)
            continue
        # The replicate that completed the rung stopped there; the mean is over both seeds' first
        # results at or after the rung (Tune's own record), whatever the other seed reached later.
        assert c["stopped_at"] in (2, 4) and min(t["iteration"] for t in replicas) == c["stopped_at"]
        at_rung = [next(r["val/miou"] for r in tune_results(sweep_dir, t["trial_id"])
                        if r["iteration"] >= c["stopped_at"]) for t in replicas]
        assert c["mean"] == pytest.approx(sum(at_rung) / 2)
    assert [c["rank"] for c in summary["configs"]] == [1, 2, 3] and summary["configs"][-1] in stopped
    assert summary["best"]["iteration"] == FULL  # complete configurations rank first
    assert summary["reproducibility"]["configs"] == 3 - len(stopped)  # the complete configurations
    assert summary["reproducibility"]["stopped"] == len(stopped)
    assert f"{len(stopped)} configuration(s) stopped early by the scheduler not counted" in proc.stdout
    # A trial ASHA stops at max_t is complete on disk, and report / retrain --best, which rank from
    # the run directories and asha.json, see the configurations as the summary does.
    for trial in trials.values():
        if trial["iteration"] == FULL:
            run = RunDir(Path(trial["run_dir"]))
            assert run.finished() and run.model("stage2").is_file()
    metric, mode = selection_rule(sweep_dir)
    configs = load_configs(sweep_dir, load_trials(sweep_dir), metric, mode)
    assert [(list(c.trial_ids), c.stop and c.stop.iteration) for c in configs] == [
        (c["trial_ids"], c["stopped_at"]) for c in summary["configs"]]


@pytest.mark.ray_sweep
def test_crash_is_retried_from_checkpoint_and_nan_fails_alone(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"grid": [0.01, 0.02, 0.03]}}, max_failures=2)
    fault = "crash_once_at=2@stage1.lambda_ci=0.01;nan_at=4@stage1.lambda_ci=0.03"
    proc = run_sweep(space, tmp_path / "sweeps", "faults", env={"SIMTUNE_FAULT": fault}, expect=EXIT_TRIALS_FAILED)
    sweep_dir = tmp_path / "sweeps" / "faults"
    summary = summary_of(sweep_dir)
    crashed, healthy, diverged = (by_param(summary, "stage1.lambda_ci")[v] for v in (0.01, 0.02, 0.03))

    assert crashed["status"] == "TERMINATED" and crashed["iteration"] == FULL and crashed["failures"] == 1
    second = attempts(sweep_dir, crashed["trial_id"])[1]
    assert second["restored_checkpoint_iteration"] == 2  # from Tune's checkpoint, not from scratch
    reported = [r["iteration"] for r in tune_results(sweep_dir, crashed["trial_id"])]
    assert reported == [2, 4, 6]  # continued after 2; never restarted at 0

    assert diverged["status"] == "ERROR" and "nan" in diverged["failure_reason"]
    assert len(attempts(sweep_dir, diverged["trial_id"])) == 1  # started once: a diverged trial is not retried
    assert (Path(diverged["run_dir"]) / "failure.json").is_file()
    # The searcher sees the diverged trial at the metric's worst value, not its last good evaluation;
    # the summary lists it as failed with no such number (summary.json stays strict JSON).
    final = tune_results(sweep_dir, diverged["trial_id"])[-1]
    assert final["failed"] == 1 and final["val/miou"] == float("-inf")
    assert "val/miou" not in diverged["metrics"]
    json.loads((sweep_dir / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary"))

    assert healthy["status"] == "TERMINATED" and healthy["iteration"] == FULL
    assert summary["counts"]["failed"] == 1 and summary["counts"]["retried"] == 1
    assert summary["best"]["trial_id"] != diverged["trial_id"]
    assert f"failed {diverged['trial_id']}:" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]  # the exit code's reason comes last
    assert last.startswith("1 of 3 trials failed; first: " + diverged["trial_id"]) and "nan" in last


@pytest.mark.ray_sweep
def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path: Path,
                                                                 tiny_bench: tuple[Path, Path]) -> None:
    values = [0.01, 0.02, 0.03]
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"grid": values}}, max_concurrent=1)
    storage, sweep_dir = tmp_path / "sweeps", tmp_path / "sweeps" / "killed"
    driver = subprocess.Popen(sweep_command(space, storage, "killed"), cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        finished = _wait_for_second_trial(sweep_dir, driver)
        before = {t: len(tune_results(sweep_dir, t)) for t in finished}
        driver.kill()  # kill -9 of the driver only
        driver.wait(timeout=30)
    finally:
        time.sleep(2)
        kill_group(driver)  # Ray helpers the dead driver left behind
    proc = run_sweep(space, storage, "killed", "--resume")
    summary = summary_of(sweep_dir)
    assert summary["counts"]["total"] == summary["counts"]["finished"] == len(values)
    assert all(t["iteration"] == FULL for t in summary["trials"])
    for trial_id, count in before.items():
        assert len(attempts(sweep_dir, trial_id)) == 1, f"finished trial {trial_id} ran again"
        assert len(tune_results(sweep_dir, trial_id)) == count
    assert "best config:" in proc.stdout


def _wait_for_second_trial(sweep_dir: Path, driver: subprocess.Popen[Any], timeout: float = 180) -> list[str]:
    """Wait until one trial finished and the next one reported (Tune has saved the first as done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be killed"
        runs = sorted(p for p in (sweep_dir / "runs").glob("*") if p.is_dir())
        finished = [p.name for p in runs if (p / "results.json").is_file()]
        running = [p.name for p in runs if p.name not in finished]
        if finished and running and (sweep_dir / f"trial_{running[0]}" / "result.json").is_file() \
                and (sweep_dir / f"trial_{running[0]}" / "result.json").read_text().strip():
            time.sleep(1)
            return finished
        time.sleep(0.5)
    raise AssertionError("no trial finished in time")


# ----------------------------------------------------------------------------- a real 2-node cluster


@pytest.mark.slow
def test_sweep_on_a_two_node_cluster(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                     two_node_cluster: Cluster) -> None:
    cluster = two_node_cluster
    space = write_space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"grid": [0.3, 0.6]}})
    implicit = simtune("sweep", str(space), "--address", cluster.address, "--name", "nostorage", cwd=tmp_path,
                       timeout=180, env=cluster.env)
    error = implicit.stderr.strip().splitlines()[-1]  # after Ray's own connection warnings
    assert implicit.returncode == 2 and error.startswith("simtune sweep: error:") and "--storage" in error

    # A race (two rounds of Tune experiments driven from one process) on the cluster.
    raced = write_space(tmp_path / "race", tiny_bench, {"pseudo_label.quantile": {"grid": [0.3, 0.6]}},
                        racing={"first_test": 2, "max_replicates": 2})
    run_sweep(raced, tmp_path / "shared", "cluster", "--address", cluster.address, env=cluster.env)
    summary = summary_of(tmp_path / "shared" / "cluster")
    assert summary["counts"]["finished"] == 4 and [c["seeds"] for c in summary["configs"]] == [[0, 1], [0, 1]]
    assert all(t["iteration"] == FULL for t in summary["trials"])
    assert len(SweepDir(tmp_path / "shared" / "cluster").rounds()) == 2


@pytest.mark.ray_sweep
def test_sweep_trials_share_one_stage0_and_tune_sees_it(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    """Both trials start from one stage 0 (trained by the first); its evaluation reaches Tune
    at iteration 0, before stage 1's, and the trials still run to the end. (Random search:
    the one real sweep of that algorithm.)"""
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"choice": [0.01, 0.1]}},
                        search={"algorithm": "random", "seed": 1}, num_samples=2)
    text = space.read_text().replace("init.source_pretrain.iters: 0", "init.source_pretrain.iters: 2")
    space.write_text(text)
    run_sweep(space, tmp_path / "sweeps", "s0", timeout=600)
    sweep = tmp_path / "sweeps" / "s0"
    assert len([p for p in (sweep / "stage0_cache").iterdir() if p.is_dir()]) == 1
    done = [json.loads(RunDir(run).done("stage0").read_text()) for run in (sweep / "runs").iterdir()]
    assert sorted("from_cache" in d for d in done) == [False, True]
    for trial in summary_of(sweep)["trials"]:
        results = tune_results(sweep, trial["trial_id"])
        assert (results[0]["stage"], results[0]["iteration"]) == (0, 0)
        assert results[-1]["iteration"] == FULL
