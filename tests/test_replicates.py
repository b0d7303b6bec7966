"""Replicates on Ray Tune: the searcher sees configuration means, ASHA keeps or stops whole configurations.

These use Tune's real searcher and scheduler objects with a toy trainable (no pipeline), so
they check simtune's Tune wiring in seconds; the end-to-end sweeps are in test_sweep.py.
"""

from __future__ import annotations

import json
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


def test_config_asha_with_one_replicate_decides_as_ray_asha() -> None:
    """K = 1: the same STOP/CONTINUE as Ray's own ASHAScheduler on the same results, in random orders."""
    import random

    from ray.tune.schedulers import ASHAScheduler

    class Named:  # all the schedulers read of a trial here
        def __init__(self, trial_id: str) -> None:
            self.trial_id, self.config, self.status, self.storage = trial_id, {"x": trial_id}, "PENDING", None

    for case in range(100):
        rng = random.Random(case)
        rungs = {"max_t": rng.choice([8, 9, 16]), "grace_period": rng.choice([1, 2]),
                 "reduction_factor": rng.choice([2, 3, 4])}
        mode = rng.choice(["max", "min"])
        ours = replicates.ConfigASHA(replicates=1, **rungs)
        ray_asha = ASHAScheduler(time_attr="iteration", **rungs)
        trials = [Named(f"t{i}") for i in range(12)]
        for scheduler in (ours, ray_asha):
            assert scheduler.set_search_properties("m", mode)
            for trial in trials:
                scheduler.on_trial_add(None, trial)
        steps = dict.fromkeys(range(12), 0)
        while steps:
            i = rng.choice(list(steps))
            steps[i] += 1
            result = {"iteration": steps[i], "m": rng.random()}
            decision = ours.on_trial_result(None, trials[i], result)
            assert decision == ray_asha.on_trial_result(None, trials[i], result), (case, i, steps[i])
            if decision == "STOP":
                del steps[i]


@pytest.mark.ray_sweep
def test_config_asha_stops_a_configuration_as_a_whole_and_resumes(tmp_path: Path, ray_head: str) -> None:
    import os
    import signal

    import ray
    from ray import tune

    from simtune.results.sweepdir import SweepDir

    def climb(config: dict[str, Any]) -> None:  # nested: Ray workers get it by value
        """A toy trial: the metric is step x the configuration's value for its seed."""
        per_seed = {"A": (1.0, 1.0), "B": (1.8, 0.0), "C": (1.1, 1.1), "D": (0.5, 0.5)}[config["c"]]
        for step in range(1, 9):
            tune.report({"m": per_seed[config[TRIAL_INDEX]] * step, "iteration": step})

    class Interrupt(tune.Callback):  # type: ignore[misc]
        """Ends the run as Ctrl-C would (Tune's SIGUSR1 handler) at D's first result, once."""

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            flag = Path(trial.local_experiment_path) / "interrupted"  # travels with the experiment
            if trial.config["c"] == "D" and not flag.exists():
                flag.write_text("")
                assert callable(signal.getsignal(signal.SIGUSR1)), "Tune installed no SIGUSR1 handler"
                os.kill(os.getpid(), signal.SIGUSR1)

    # A is kept; B's seed 0 beats A's seed 0 at every rung, but B's mean over both seeds is below
    # A's: B stops as a whole; C is above the median of A and B. D comes after the interruption.
    space = replicates.param_space({"c": tune.grid_search(["A", "B", "C", "D"])}, 2, searcher=False)
    asha = replicates.ConfigASHA(replicates=2, max_t=8, grace_period=2, reduction_factor=2)
    experiment = tmp_path / "whole"
    ray.init(address=ray_head, logging_level="ERROR")  # the session's head: 2 CPUs
    try:
        tune.Tuner(climb, param_space=space,
                   tune_config=tune.TuneConfig(metric="m", mode="max", max_concurrent_trials=2, scheduler=asha),
                   run_config=tune.RunConfig(name="whole", storage_path=str(tmp_path), verbose=0,
                                             callbacks=[Interrupt()])).fit()
        before = json.loads(SweepDir(experiment).asha.read_text())["rule"]
        # Tuner.restore brings the scheduler back as it was created, empty; it reloads asha.json.
        results = tune.Tuner.restore(str(experiment), climb, resume_unfinished=True, resume_errored=False).fit()
    finally:
        ray.shutdown()
    saved = json.loads(SweepDir(experiment).asha.read_text())
    stops = {json.loads(c)["c"]: s for c, s in saved["rule"]["stops"].items()}
    assert before["stops"].keys() < saved["rule"]["stops"].keys()  # D was decided after the restore
    # D's mean 1.0 is below the median of A, B and C recorded at rung 2 before the interruption;
    # a scheduler that had not reloaded them would have found the rung empty and kept D.
    assert stops == {"B": {"rung": 2, "reason": "cut", "values": {"0": 3.6, "1": 0.0}},
                     "D": {"rung": 2, "reason": "cut", "values": {"0": 1.0, "1": 1.0}}}
    reached = {(r.config["c"], r.config[TRIAL_INDEX]): r.metrics["iteration"] for r in results}
    assert reached[("A", 0)] == reached[("A", 1)] == reached[("C", 0)] == reached[("C", 1)] == 8
    # B and D were decided when their second seed reached rung 2, which stopped there; the first
    # was stopped at its next report, unless it had run on to max_t meanwhile (a toy step is instant).
    assert min(reached[("B", 0)], reached[("B", 1)]) == min(reached[("D", 0)], reached[("D", 1)]) == 2, reached
