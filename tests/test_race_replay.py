"""scripts/race_replay.py judges racing on truth it did not choose on (the docs' table comes from it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "docs" / "data" / "lambda_ci_grid_10seeds.csv"


def replay_module() -> Any:
    spec = importlib.util.spec_from_file_location("race_replay", ROOT / "scripts" / "race_replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seed_split_scores_picks_on_seeds_it_did_not_race() -> None:
    replay = replay_module()
    table = {"a": [float(s) for s in range(10)], "b": [float(s) for s in range(10)]}  # value = the seed
    for raced, truth in replay.split_draws(table, 50, np.random.default_rng(0)):
        chosen = set(raced["a"])
        held_mean = truth["a"]
        assert len(chosen) == 5 and held_mean == (45.0 - sum(chosen)) / 5  # the other five seeds only


def test_the_replay_prints_both_evaluations_and_the_told_values() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "race_replay.py"), str(GRID), "--draws", "30",
                           "--first-test", "2", "5", "--min-difference", "0", "1", "--fixed", "2", "10"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "seed sd 2.06, residual sd 0.79" in out  # the model fitted to the recorded grid
    for section in ("## Seed split", "## Simulation from the fitted model", "## What TPE would be told",
                    "## Identical configurations"):
        assert section in out
    split, simulated = out.split("## Simulation")[0], out.split("## Simulation")[1].split("## What TPE")[0]
    assert "fixed K = 10" not in split  # a split of 10 seeds races on 5 of them
    assert "racing, first_test 5, δ = 1" in simulated and "fixed K = 10" in simulated


def test_the_paired_table_judges_on_the_seeds_asked_for() -> None:
    table = ROOT / "docs" / "data" / "lambda_ci_race_10seeds.csv"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "paired_table.py"), str(table), "--seeds", "4-9"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "over seed indices 4-9 (6 seeds)" in done.stdout
    assert "lambda_ci 0.1 - lambda_ci 0.01: +0.27 ± 0.46 (within noise)" in done.stdout
    assert "lambda_ci 0.1 - lambda_ci 30.0: +6.98 ± 4.29 (beyond noise)" in done.stdout
