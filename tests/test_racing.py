"""The racing rule: seeds go to the configurations that can still win; the race ends as promised."""

from __future__ import annotations

import numpy as np
import pytest

from simtune.search.racing import Racing, decide, replay


def paired_table(means: dict[str, float], seeds: int, noise: float = 0.3, seed: int = 0) -> dict[str, list[float]]:
    """Values that share a per-seed effect (sd 2, like real seeds) plus a little noise of their own."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.0, 2.0, seeds)
    return {c: list(m + shared + rng.normal(0.0, noise, seeds)) for c, m in means.items()}


def test_a_clearly_worse_configuration_is_eliminated_early_and_the_others_race_on() -> None:
    table = paired_table({"a": 30.0, "b": 30.0, "bad": 25.0}, seeds=10, noise=0.1)
    racing = Racing(min_replicates=2, max_replicates=10)
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
    step = decide(table, ["a", "b"], 2, Racing(min_replicates=3, max_replicates=5))
    assert step.survivors == ("a",) and step.eliminated[0].reason == "failed"
    assert step.finished and step.why == "one survivor"


def test_identical_configurations_race_to_max_replicates() -> None:
    table = paired_table({c: 30.0 for c in "abcd"}, seeds=6, seed=3)
    outcome = replay(table, Racing(min_replicates=2, max_replicates=6))
    assert outcome.rounds == 6 and outcome.trials <= 24


def test_min_mode_eliminates_the_larger_values() -> None:
    table = paired_table({"low": 1.0, "high": 6.0}, seeds=5)
    step = decide(table, ["low", "high"], 3, Racing(min_replicates=3, max_replicates=5), mode="min")
    assert step.survivors == ("low",) and step.eliminated[0].config == "high"


def test_replay_needs_every_round_in_the_table() -> None:
    with pytest.raises(ValueError, match="the race may need 10"):
        replay({"a": [1.0, 2.0]}, Racing(max_replicates=10))
