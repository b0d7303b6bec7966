"""The racing rule: seeds go to the configurations that can still win; the race ends as promised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from simtune.errors import SearchSpaceError
from simtune.search.replicates import config_key
from simtune.search.parse import load_space
from simtune.search.races import run_races
from simtune.search.racing import Racing, decide, replay
from simtune.search.space import SearchSpace
from simtune.testing import SYNTHETIC_EXPERIMENT


def paired_table(means: dict[str, float], seeds: int, noise: float = 0.3, seed: int = 0) -> dict[str, list[float]]:
    """Values that share a per-seed effect (sd 2, like real seeds) plus a little noise of their own."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.0, 2.0, seeds)
    return {c: list(m + shared + rng.normal(0.0, noise, seeds)) for c, m in means.items()}


def test_a_clearly_worse_configuration_is_eliminated_early_and_the_others_race_on() -> None:
    table = paired_table({"a": 30.0, "b": 30.0, "bad": 25.0}, seeds=10, noise=0.1)
    racing = Racing(first_test=2, max_replicates=10)
    assert decide(table, ["a", "b", "bad"], 1, racing).survivors == ("a", "b", "bad")  # no test before min
    step = decide(table, ["a", "b", "bad"], 2, racing)
    (gone,) = step.eliminated
    assert gone.config == "bad" and gone.reason == "beaten" and gone.after == 2 and gone.difference > 4
    assert step.survivors == ("a", "b") and not step.finished
    outcome = replay(table, racing)
    assert outcome.eliminated[0] == gone and outcome.winner in ("a", "b")
    left = {e.config: e.after for e in outcome.eliminated}
    assert outcome.trials == sum(left.get(c, outcome.rounds) for c in table)  # losers stop costing seeds


def test_a_failed_replicate_leaves_the_race_at_once() -> None:
    table: dict[str, list[float | None]] = {"a": [30.0, 31.0, 30.5], "b": [29.0, None, 30.0]}
    step = decide(table, ["a", "b"], 2, Racing(first_test=3, max_replicates=5))
    assert step.survivors == ("a",) and step.eliminated[0].reason == "failed"
    assert step.finished and step.why == "one survivor"


def test_identical_configurations_race_to_max_replicates() -> None:
    table = paired_table(dict.fromkeys("abcd", 30.0), seeds=6, seed=3)
    outcome = replay(table, Racing(first_test=2, max_replicates=6))
    assert outcome.rounds == 6 and outcome.trials <= 24


def test_min_mode_eliminates_the_larger_values() -> None:
    table = paired_table({"low": 1.0, "high": 6.0}, seeds=5)
    step = decide(table, ["low", "high"], 3, Racing(first_test=3, max_replicates=5), mode="min")
    assert step.survivors == ("low",) and step.eliminated[0].config == "high"


def test_replay_needs_every_round_in_the_table() -> None:
    with pytest.raises(ValueError, match="the race may need 10"):
        replay({"a": [1.0, 2.0]}, Racing(max_replicates=10))


def test_an_indifference_zone_stops_paying_for_differences_too_small_to_matter() -> None:
    """Four configurations 0.1 apart: without δ they race to max_replicates; with δ = 1 metric
    unit the ones that cannot gain 1 over the leader leave early, and the winner is one of them."""
    table = paired_table({"a": 30.0, "b": 30.1, "c": 30.2, "d": 30.3}, seeds=10, noise=0.2, seed=1)
    plain = replay(table, Racing(first_test=2, max_replicates=10))
    zoned = replay(table, Racing(first_test=2, max_replicates=10, min_difference=1.0))
    assert plain.rounds == 10 and zoned.rounds < 10 and zoned.trials < plain.trials / 2
    assert {e.reason for e in zoned.eliminated} == {"no gain of δ"} and zoned.winner in table
    big = paired_table({"a": 30.0, "bad": 25.0}, seeds=4, noise=0.1)
    (gone,) = decide(big, ["a", "bad"], 2, Racing(first_test=2, min_difference=1.0)).eliminated
    assert gone.difference > 4 and gone.reason == "beaten"  # a lead beyond noise is said as such


# ----------------------------------------------------------------------------- races over Optuna's proposals


def optuna_space(tmp_path: Path, **racing: Any) -> SearchSpace:
    body = {"base": str(SYNTHETIC_EXPERIMENT), "search": {"algorithm": "optuna", "seed": 0}, "num_samples": 5,
            "racing": {"first_test": 2, "max_replicates": 4, "batch": 2, **racing},
            "params": {"stage1.lambda_ci": {"choice": [0.001, 0.01, 0.1, 0.3, 1.0, 3.0]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(body))
    return load_space(tmp_path / "space.yaml")


class ToyTrials:
    """A selection metric of λ_ci and the seed: best at λ_ci 0.1, a shared effect per seed."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.runs: list[tuple[str, int]] = []  # (configuration, replicate) in the order trained
        self.fail_after = fail_after

    def __call__(self, number: int, configs: list[dict[str, Any]], replicate: int) -> dict[str, float | None]:
        if self.fail_after is not None and len(self.runs) >= self.fail_after:
            raise KeyboardInterrupt("the driver was killed")
        out: dict[str, float | None] = {}
        for c in configs:
            self.runs.append((config_key(c), replicate))
            lam = c["stage1.lambda_ci"]
            out[config_key(c)] = 30.0 - 2.0 * abs(np.log10(lam) + 1.0) + [0.0, 1.5, -1.0, 0.5][replicate]
        return out


def test_optuna_races_its_proposals_with_the_elites_and_never_reruns_a_seed(tmp_path: Path) -> None:
    space = optuna_space(tmp_path)
    trials = ToyTrials()
    record = run_races(space, trials, save=lambda r: None, say=lambda line: None)
    keys = [config_key(c) for c in record["configurations"]]
    assert len(keys) == len(set(keys)) == 5  # num_samples distinct configurations
    assert [len(r["proposed"]) for r in record["races"]] == [2, 2, 1]  # racing.batch, then what is left
    assert len(trials.runs) == len(set(trials.runs))  # an elite keeps its seeds: none trained twice
    for before, after in zip(record["races"], record["races"][1:]):
        ended = [r for r in record["rounds"] if r["race"] == before["race"]][-1]
        assert after["carried"] == ended["survivors"]  # the survivors race on
    assert all(seeds == sorted(seeds) and seeds == list(range(len(seeds)))
               for seeds in ([k for c, k in trials.runs if c == key] for key in keys))  # the same seed sequence


def test_a_resumed_optuna_race_reraces_the_recorded_proposals(tmp_path: Path) -> None:
    space = optuna_space(tmp_path)
    saved: list[dict[str, Any]] = []
    with pytest.raises(KeyboardInterrupt):
        run_races(space, ToyTrials(fail_after=5), save=lambda r: saved.append(json.loads(json.dumps(r))),
                  say=lambda line: None)
    interrupted = saved[-1]
    assert len(interrupted["races"]) == 2  # killed in the second race
    with pytest.raises(KeyboardInterrupt):  # killed again, in the first race of the resumed driver
        run_races(space, ToyTrials(fail_after=1), save=lambda r: saved.append(json.loads(json.dumps(r))),
                  earlier=interrupted["races"], say=lambda line: None)
    assert saved[-1]["races"] == interrupted["races"]  # the second race's proposals are still on record
    record = run_races(space, ToyTrials(), save=lambda r: None, earlier=saved[-1]["races"], say=lambda line: None)
    for old, new in zip(interrupted["races"], record["races"]):
        assert old["proposed"] == new["proposed"]
    assert len(record["configurations"]) == 5 and record["rounds"][-1]["finished"]


def test_racing_batch_is_for_optuna_only(tmp_path: Path) -> None:
    body = {"base": str(SYNTHETIC_EXPERIMENT), "racing": {"batch": 3},
            "params": {"stage1.lambda_ci": {"grid": [0.01, 0.1]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(SearchSpaceError, match="racing.batch is for search.algorithm optuna"):
        load_space(tmp_path / "space.yaml")
    with pytest.raises(SearchSpaceError, match="racing.min_difference must be a number >= 0"):
        optuna_space(tmp_path, min_difference=-1)


def test_an_elite_is_not_eliminated_before_the_newcomers_have_its_seeds() -> None:
    """irace's rule: the survivors of an earlier race keep their place until the newcomers have run as
    many seeds, however the first seeds of the new race look."""
    from simtune.search.racing import Race

    elite = [20.0, 20.5, 26.0, 26.2, 25.9]  # bad on seeds 0 and 1, good afterwards
    new1, new2 = [24.0, 24.6, 24.2, 24.5, 23.9], [24.3, 24.1, 24.4, 24.0, 24.6]  # level with each other
    racing = Racing(first_test=2, max_replicates=6)
    race = Race(racing, "max", ["elite", "new1", "new2"], carried={"elite": elite})
    for n in range(2):
        race.record({"new1": new1[n], "new2": new2[n]})
        step = race.decide()
    assert "elite" in step.survivors  # 4 points behind on seeds 0 and 1, yet still racing
    assert decide(race.table, ["elite", "new1", "new2"], 2, racing).eliminated[0].config == "elite"  # unprotected
    race.record({"new1": new1[2], "new2": new2[2]})
    race.decide()
    assert race.pending() == ["new1", "new2"]  # the elite runs none of the seeds it has
    for n in (3, 4):
        race.record({"new1": new1[n], "new2": new2[n]})
        race.decide()
    assert race.n == 5 and "elite" in race.survivors  # once level, tested like everyone


def test_optuna_is_told_seed_adjusted_estimates_and_retold_as_seeds_arrive(tmp_path: Path) -> None:
    from simtune.search.races import OptunaProposals

    proposals = OptunaProposals(optuna_space(tmp_path))
    first = proposals.propose()
    a, b = (config_key(c) for c in first)
    proposals.tell(a, [30.0, 30.0, 20.0, 20.0])  # ran four seeds: two lucky (+5), two unlucky (-5)
    proposals.tell(b, [29.0, 29.0])  # eliminated after the lucky two: 1 below a on each
    told = proposals.told()
    assert told[b] == pytest.approx(24.0) and told[a] == pytest.approx(25.0)  # not 29 vs 25
    proposals.tell(a, [30.0, 30.0, 20.0, 20.0, 27.0])  # a seed arrives for a: every estimate moves
    assert proposals.told()[b] == pytest.approx(np.mean([30, 30, 20, 20, 27]) - 1.0)
    study = proposals._study(proposals.told())
    assert sorted(t.value for t in study.trials) == sorted(proposals.told().values())
    assert {t.user_attrs["n_seeds"] for t in study.trials} == {2, 5}
    proposals.tell(a, [30.0, None])  # a failed seed: the worst value
    assert proposals.told()[a] == -np.inf


def test_configurations_on_unlike_seeds_rank_by_their_seed_adjusted_estimates() -> None:
    from simtune.results.ranking import ConfigResult, Replicate, Standing, rank_configs

    def config(value: float, seeds: dict[int, float], completed: bool) -> ConfigResult:
        reps = tuple(Replicate(f"t{value}-{s}", s, Standing(v, True), {"val/miou": v}) for s, v in seeds.items())
        return ConfigResult({"stage1.lambda_ci": value}, reps, tuple(r.trial_id for r in reps), completed)

    effects = [4.0, 4.0, -2.0, -2.0, -4.0]
    winner = config(0.1, {s: 23.0 + e for s, e in enumerate(effects)}, True)
    beaten_late = config(0.01, {s: 22.5 + e for s, e in enumerate(effects[:4])}, False)  # left after 4 seeds
    beaten_early = config(1.0, {s: 21.0 + e for s, e in enumerate(effects[:2])}, False)  # left after 2 lucky seeds
    ranked = rank_configs([beaten_early, winner, beaten_late], "val/miou")
    assert [c.params["stage1.lambda_ci"] for c in ranked] == [0.1, 0.01, 1.0]  # raw means: 1.0 before 0.01
    # its truth: the seed effects sum to 0 over the sweep's seeds
    assert ranked[2].estimate is not None and ranked[2].estimate.value == pytest.approx(21.0)
    assert ranked[0].estimate is not None and ranked[0].estimate.value == pytest.approx(winner.spread("val/miou").mean)


def test_the_final_table_shows_the_seed_adjusted_estimate_when_seed_sets_differ(tmp_path: Path) -> None:
    import dataclasses

    from simtune.commands.sweep import format_summary
    from simtune.results.summary import ConfigSummary, Summary

    def row(rank: int, lam: float, seeds: list[int], mean: float, estimate: float) -> ConfigSummary:
        return ConfigSummary(rank=rank, params={"stage1.lambda_ci": lam}, n=len(seeds), seeds=seeds, mean=mean,
                             std=1.0, trained_to_end=rank == 1, trial_ids=[f"t{lam}"], estimate=estimate,
                             estimate_se=0.4 if len(seeds) > 2 else 1.1)

    (tmp_path / "race.json").write_text("{}")
    summary = dataclasses.replace(Summary.empty(tmp_path), replicates=5, configs=[
        row(1, 0.1, [0, 1, 2, 3, 4], 22.2, 22.2), row(2, 1.0, [0, 1], 23.1, 21.0)])
    table = format_summary(summary)
    assert "val/miou seed-adjusted" in table and "21.00 ± 1.10" in table and "22.20 ± 0.40" in table
    assert "they rank by the seed-adjusted estimate" in table
    same = dataclasses.replace(summary, configs=[row(1, 0.1, [0, 1], 22.2, 22.2), row(2, 1.0, [0, 1], 21.0, 21.0)])
    assert "seed-adjusted" not in format_summary(same)  # same seeds: the raw mean is the estimate
