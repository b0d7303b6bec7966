"""retrain's confirmation line: sweep estimate minus fresh seeds, with its interval, and the
winner's curse named only when the interval excludes 0."""

from __future__ import annotations

from pathlib import Path

from simtune.results.trials import TrialOutcome
from simtune.stats import spread
from simtune.workflows.retrain import Candidate, RetrainResult, confirmation
from simtune.workflows.retrain_seeds import SeedRun


def result(sweep: list[float], fresh: list[float]) -> RetrainResult:
    trial = TrialOutcome("t0", Path("/nowhere"), {"seed": 0}, {}, None, True, None)
    seeds = list(range(10, 10 + len(fresh)))
    best = Candidate("best", trial, seeds=seeds, sweep={"val/miou": spread(sweep)},
                     runs=[SeedRun(s, Path("/nowhere"), "run", {"val/miou": v}) for s, v in zip(seeds, fresh)])
    return RetrainResult(Path("/sweep"), "val/miou", "max", "sqlite://", "parent", None, [best])


def test_a_shortfall_inside_the_noise_is_not_called_the_winners_curse() -> None:
    (line,) = confirmation(result([23.0, 25.0, 21.0], [22.5, 21.0, 23.1]))
    assert "sweep estimate - confirmation = 0.80 ± " in line and "mIoU (95%)" in line
    assert line.endswith("confirmation within noise of the sweep's estimate") and "curse" not in line


def test_a_shortfall_beyond_the_noise_is_the_winners_curse() -> None:
    (line,) = confirmation(result([25.0, 25.2, 24.9, 25.1], [22.0, 22.1, 21.9, 22.2]))
    assert "sweep estimate - confirmation = 3.00 ± " in line and "lower on fresh seeds beyond noise" in line
    assert "winner's curse" in line


def test_one_fresh_seed_says_the_noise_is_unknown() -> None:
    (line,) = confirmation(result([25.0, 24.0], [22.0]))
    assert "= 2.50 mIoU; noise unknown with one seed on a side" in line
