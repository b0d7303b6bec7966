"""Racing sweeps through the real CLI on the session's Ray: seeds go only to contenders."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from simtune.cli import main
from simtune.errors import EXIT_TRIALS_FAILED, EXIT_USER_ERROR
from simtune.results.sweepdir import SweepDir
from simtune.rundir import RunDir
from simtune.sweep.tuner import tune_started
from simtune.testing import kill_group
from simtune.testing import write_tiny_space as write_space

from test_sweep import run_sweep, summary_of, sweep_command

RACING = {"first_test": 2, "max_replicates": 3}


def race_record(sweep_dir: Path) -> dict[str, Any]:
    return json.loads(SweepDir(sweep_dir).race.read_text())


@pytest.mark.ray_sweep
def test_a_failing_configuration_leaves_the_race_and_the_others_race_on(tmp_path: Path,
                                                                        tiny_bench: tuple[Path, Path]) -> None:
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"grid": [0.01, 0.02, 0.03]}}, racing=RACING)
    proc = run_sweep(space, tmp_path / "sweeps", "race", env={"SIMTUNE_FAULT": "nan_at=2@stage1.lambda_ci=0.03"},
                     expect=EXIT_TRIALS_FAILED)
    sweep_dir = tmp_path / "sweeps" / "race"
    summary = summary_of(sweep_dir)
    configs = {c["params"]["stage1.lambda_ci"]: c for c in summary["configs"]}
    assert configs[0.03]["eliminated_after"] == 1 and configs[0.03]["eliminated_reason"] == "failed"
    first = race_record(sweep_dir)["rounds"][0]
    assert len(first["entered"]) == 3 and len(first["survivors"]) == 2  # eliminated after one seed
    second = race_record(sweep_dir)["rounds"][1]
    assert len(second["entered"]) == 2  # the failed configuration got no second seed
    for value in (0.01, 0.02):  # the others raced on, every round on the same seed
        assert configs[value]["n"] >= 2 and configs[value]["seeds"][:2] == [0, 1]
    assert summary["counts"]["total"] < 3 * RACING["max_replicates"]
    assert configs[0.03]["rank"] is None or configs[0.03]["rank"] > 2  # after those still racing
    assert "racing round 1 (seed index 0): 3 raced, eliminated: lambda_ci=0.03 (failed)" in proc.stderr
    assert f"racing: {summary['counts']['total']} of the 9 trials" in proc.stdout  # the failed one cost a trial


def test_racing_settings_are_validated_before_anything_runs(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = [({"racing": {"first_test": 1}}, "racing.first_test' must be an integer >= 2"),
           ({"racing": {"max_replicates": 1}}, "racing.max_replicates' must be an integer >= 2"),
           ({"racing": {"max_replicates": 3}},
            "racing.max_replicates (3) must be >= racing.first_test (5, its default)"),
           ({"racing": {"min_replicates": 2}}, "racing.min_replicates is now racing.first_test"),
           ({"racing": {"confidnce": 0.9}}, "unknown key 'racing.confidnce'"),
           ({"racing": {}, "replicates": 3}, "remove 'replicates'"),
           ({"racing": {"batch": 1}, "search": {"algorithm": "optuna"}}, "'racing.batch' must be an integer >= 2"),
           ({"racing": {}, "scheduler": {"type": "asha"}}, "use scheduler type fifo")]
    for index, (settings, message) in enumerate(bad):
        params = {"stage1.lambda_ci": {"choice" if "search" in settings else "grid": [0.01, 0.1]}}
        space = write_space(tmp_path / str(index), tiny_bench, params, **settings)
        assert main(["sweep", str(space), "--storage", str(tmp_path / "sweeps"), "--name", "x"]) == EXIT_USER_ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / "sweeps" / "x").exists()


@pytest.mark.ray_sweep
def test_killed_optuna_racing_driver_resumes_without_rerunning_finished_trials(
        tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    """Optuna proposes two configurations for the first race and one for the second, which the
    survivors of the first join with the seeds they have; the driver is killed once round 2 is under
    way. The next round's folder holds only a tuner file, as when a driver is killed between making a
    round's Tuner and Tune's first save: that round is started afresh."""
    space = write_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"choice": [0.01, 0.02, 0.03]}},
                        max_concurrent=1, search={"algorithm": "optuna", "seed": 0}, num_samples=3,
                        racing={"first_test": 2, "max_replicates": 2, "batch": 2})
    storage, sweep_dir = tmp_path / "sweeps", tmp_path / "sweeps" / "killed"
    driver = subprocess.Popen(sweep_command(space, storage, "killed"), cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_round_two(sweep_dir, driver)
        driver.kill()  # kill -9 of the driver only
        driver.wait(timeout=30)
    finally:
        time.sleep(2)
        kill_group(driver)
    finished = _saved_as_finished(sweep_dir)
    assert len(finished) >= 2  # round 1 at least
    folder = SweepDir(sweep_dir)
    unstarted = folder.race_round(next(n for n in range(1, 10) if not folder.race_round(n).exists()))
    unstarted.mkdir()
    shutil.copy2(folder.race_round(1) / "tuner.pkl", unstarted)
    run_sweep(space, storage, "killed", "--resume")
    summary = summary_of(sweep_dir)
    assert summary["counts"]["failed"] == 0 and summary["counts"]["finished"] == summary["counts"]["total"]
    for trial_id in finished:
        assert len(RunDir(SweepDir(sweep_dir).runs / trial_id).attempts.read_text().splitlines()) == 1, \
            f"finished trial {trial_id} ran again"
    record = race_record(sweep_dir)
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1)) and rounds[-1]["finished"]
    first, second = record["races"]
    assert len(first["proposed"]) == 2 and len(second["proposed"]) == 1
    assert second["carried"] == [r for r in rounds if r["race"] == 1][-1]["survivors"]
    trained = [(c, r["replicate"]) for r in rounds for c in r["trained"]]
    assert len(trained) == len(set(trained)) == summary["counts"]["total"]  # no seed of a configuration twice


def _wait_for_round_two(sweep_dir: Path, driver: subprocess.Popen[Any], timeout: float = 300) -> None:
    """Wait until round 2 is under way: three of the six trials have finished."""
    deadline = time.monotonic() + timeout
    runs = SweepDir(sweep_dir).runs
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be killed"
        if runs.is_dir() and sum(RunDir(p).finished() for p in runs.glob("*")) >= 3:
            return
        time.sleep(0.5)
    raise AssertionError("round 2 did not get going in time")


def _saved_as_finished(sweep_dir: Path) -> list[str]:
    """The trials Tune's saved experiment states list as terminated: what a resume must not run again."""
    from ray import tune

    rounds = sorted(SweepDir(sweep_dir).race_rounds.glob("round*"))
    return [trial.trial_id for path in rounds if tune_started(path)
            for trial in tune.ExperimentAnalysis(str(path)).trials if trial.status == "TERMINATED"]
