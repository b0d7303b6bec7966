"""Replicates on Ray Tune: the searcher sees configuration means, ASHA races each seed separately.

These use Tune's real searcher and scheduler objects with a toy trainable (no pipeline), so
they check simtune's Tune wiring in seconds; the end-to-end sweeps are in test_sweep.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simtune.sweep import tuner as replicates
from simtune.search.replicates import TRIAL_INDEX


def test_optuna_searcher_sees_the_mean_of_the_replicates() -> None:
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    inner = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0))
    searcher = replicates.repeated(inner, 3)
    assert searcher.set_search_properties("m", "max", {"x": tune.uniform(0.0, 1.0)})
    proposals = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [p[TRIAL_INDEX] for p in proposals] == [0, 1, 2, 0, 1, 2]
    assert len({p["x"] for p in proposals[:3]}) == 1 and proposals[0]["x"] != proposals[3]["x"]
    for i, value in enumerate([1.0, 2.0, 6.0]):
        searcher.on_trial_complete(f"t{i}", {"m": value})
    finished = [t for t in inner._ot_study.trials if t.value is not None]
    assert [t.value for t in finished] == [pytest.approx(3.0)]  # the mean, told once


def test_grid_and_random_hold_values_over_replicates() -> None:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    space = replicates.param_space({"x": tune.uniform(0.0, 1.0), "y": tune.grid_search([1, 2])}, 2, searcher=False)
    generator = BasicVariantGenerator(random_state=0, constant_grid_search=True)
    from ray.tune.experiment import Experiment

    generator.add_configurations([Experiment("t", lambda c: None, config=space, num_samples=2)])
    configs = []
    while (trial := generator.next_trial()) is not None:
        configs.append(trial.config)
    assert len(configs) == 2 * 2 * 2  # samples x grid values x replicates
    for sample in (configs[:4], configs[4:]):
        assert len({c["x"] for c in sample}) == 1  # one random draw per sample
        assert sorted((c["y"], c[TRIAL_INDEX]) for c in sample) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert configs[0]["x"] != configs[4]["x"]


@pytest.mark.slow
@pytest.mark.ray_sweep
def test_paired_asha_compares_each_seed_only_with_the_same_seed(tmp_path: Path, ray_head: str) -> None:
    import ray
    from ray import tune

    def climb(config: dict[str, Any]) -> None:  # nested: Ray workers get it by value
        """A toy trial: the metric rises with x; replicate 1's seed adds 5 everywhere."""
        for step in range(1, 9):
            tune.report({"m": config["x"] * step + 5.0 * config.get(TRIAL_INDEX, 0), "iteration": step})

    values = [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]  # each proposed after a better one: ASHA cuts some
    space = replicates.param_space({"x": tune.grid_search(values)}, 2, searcher=False)
    ray.init(address=ray_head, logging_level="ERROR")  # the session's head: 2 CPUs
    try:
        results = tune.Tuner(
            climb, param_space=space,
            tune_config=tune.TuneConfig(metric="m", mode="max", max_concurrent_trials=2, scheduler=replicates.paired_asha(
                2, time_attr="iteration", max_t=8, grace_period=2, reduction_factor=2)),
            run_config=tune.RunConfig(name="paired", storage_path=str(tmp_path), verbose=0)).fit()
    finally:
        ray.shutdown()
    reached = {(r.config["x"], r.config[TRIAL_INDEX]): r.metrics["iteration"] for r in results}
    # Seed 1's offset of +5 would let all its replicates beat all of seed 0's in one shared race;
    # raced per seed, both seeds stop and keep the same configurations.
    assert [reached[(x, 0)] for x in values] == [reached[(x, 1)] for x in values]
    assert reached[(0.6, 0)] == 8 and min(reached.values()) < 8
