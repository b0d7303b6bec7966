"""The price of a sweep before it starts: ``simtune validate SPACE --cost`` and the sweep's first line."""

from __future__ import annotations

from pathlib import Path

from simtune.search.plan.cost import estimate
from simtune.search.parse import load_space
from simtune.testing import simtune, write_tiny_space

ITERS = {"init.source_pretrain.iters": 3, "stage1.iters": 4, "stage2.iters": 2}


def _space(tmp_path: Path, tiny_bench: tuple[Path, Path], params: dict, **settings: object) -> Path:
    path = write_tiny_space(tmp_path, tiny_bench, params, **settings)
    path.write_text(path.read_text().replace("init.source_pretrain.iters: 0", "init.source_pretrain.iters: 3"))
    return path


def test_a_stage2_grid_pays_for_stage_0_and_1_once_per_seed(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = load_space(_space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"grid": [0.3, 0.5, 0.7]}},
                              replicates=2), [])
    cost = estimate(space)
    assert (cost.configurations, cost.trials.high, cost.stage0_runs.high, cost.stage1_runs.high) == (3, 6, 2, 2)
    assert cost.iterations.high == 2 * 3 + 2 * 4 + 6 * 2  # stage 0 and 1 per seed, stage 2 per trial
    unshared = estimate(space, share_stage1=False, share_stage0=False)
    assert (unshared.stage0_runs.high, unshared.stage1_runs.high, unshared.iterations.high) == (6, 6, 6 * (3 + 4 + 2))


def test_a_stage1_grid_shares_stage_0_only(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = load_space(_space(tmp_path, tiny_bench, {"stage1.lambda_ci": {"grid": [0.01, 0.1]},
                                                     "stage1.bank_size": {"grid": [10, 50]}}), [])
    cost = estimate(space)
    assert (cost.trials.high, cost.stage0_runs.high, cost.stage1_runs.high) == (4, 1, 4)
    assert cost.line(10).startswith("cost: 4 configurations x 1 seed = 4 trials; stage 0: 1 run, stage 1: 4 runs")
    assert cost.line(10).endswith(f"{cost.iterations.high * 10 / 3.6e6:.2g} GPU-hours at 10 ms/iteration (given)")


def test_racing_gives_ranges_and_the_cli_prints_the_line(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    path = _space(tmp_path, tiny_bench, {"pseudo_label.quantile": {"grid": [0.3, 0.5, 0.7]}},
                  racing={"first_test": 2, "max_replicates": 4})
    proc = simtune("validate", str(path), "--cost", "--config-only", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("cost: 3 configurations x 2 to 4 seeds = 6 to 12 trials; stage 0: 2 to 4 runs, "
                           "stage 1: 2 to 4 runs after sharing; 2")
    assert line.endswith("GPU-hours: give --ms-per-iter (docs/benchmarks.md has no paper-size GPU step time yet)")
