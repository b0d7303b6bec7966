"""Racing: spend seeds only on the configurations that can still win.

Every surviving configuration runs the same seed sequence (replicate 0, 1, ...: seed = base
seed + k, ``search.replicates``), one seed per *round*. After each round from
``first_test`` on, the current leader (best mean over the seeds every survivor has) is
compared with each other survivor by a paired t-test over those seeds, and the p-values are
corrected over the survivors with Holm's step-down procedure at ``1 - confidence``
(``simtune.stats``). A survivor the leader beats beyond that corrected level is eliminated.
With ``min_difference`` δ > 0 the test is against "the survivor beats the leader by δ or
more" (``stats.margin_p_value``): a survivor that cannot gain δ over the leader leaves too,
so configurations whose differences are too small to matter stop costing seeds (the
indifference zone of ranking-and-selection procedures). A configuration with a failed or
diverged replicate leaves the race at once: it counts as the worst. The race ends when one
survivor is left (it beat every other) or after ``max_replicates`` rounds.

This is the paired-t-test variant of F-Race (Birattari, Stützle, Paquete and Varrendorfer,
GECCO 2002) that irace offers as its ``t-test`` elimination with Holm's correction
(López-Ibáñez et al., Operations Research Perspectives 3, 2016), with seeds as the instances.
A race may start with configurations that already have seeds (the elites of an earlier race
of an Optuna search, irace's iterated racing): they run only the seeds they lack, and as in
irace they cannot be eliminated before the newcomers have as many seeds as they have (an elite
earned its place on more seeds than a test over fewer can overturn). The rule
here is pure (no Ray): ``simtune.sweep.race`` runs its rounds on Tune and
``scripts/race_replay.py`` replays it on a recorded table.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from simtune.schema import direction_sign
from simtune.stats import CONFIDENCE, holm_rejections, margin_p_value

FIRST_TEST = 5  # racing.first_test's default (irace's too), chosen on the out-of-sample replay (docs/sweeps.md)


@dataclass(frozen=True)
class Racing:
    """The ``racing:`` block of a search space."""

    first_test: int = FIRST_TEST  # seeds every configuration gets before the first elimination test (>= 2)
    max_replicates: int = 10  # the race stops after this many rounds
    confidence: float = CONFIDENCE  # family-wise: Holm at alpha = 1 - confidence over the survivors
    min_difference: float = 0.0  # δ, metric units: a survivor that cannot beat the leader by δ leaves
    batch: int = 4  # Optuna only: new configurations proposed per race


@dataclass(frozen=True)
class Elimination:
    """One configuration leaving the race."""

    config: str
    after: int  # seeds it had run (the round it left after)
    reason: str  # "beaten" by the leader (beyond noise), "no gain of δ" over it (indifference zone), or "failed"
    leader: str | None = None
    difference: float | None = None  # leader minus it, mean over the shared seeds (selection metric units)
    p_value: float | None = None  # raw p-value of the test that eliminated it (Holm-corrected over the survivors)


@dataclass(frozen=True)
class Round:
    """What one round decided: who goes on, who left, and whether the race is over."""

    survivors: tuple[str, ...]
    eliminated: tuple[Elimination, ...]
    finished: bool
    why: str  # "one survivor", "max_replicates", or "" while racing


def decide(table: Mapping[str, Sequence[float | None]], survivors: Sequence[str], n: int, racing: Racing,
           mode: str = "max", protected: Collection[str] = ()) -> Round:
    """The decision after round ``n`` (every survivor has values for replicates 0 .. n-1).

    Args:
        table: configuration -> its values by replicate index; None = the replicate failed.
        survivors: configurations still racing, in a stable order (ties keep the earlier one).
        mode: "max" or "min", as the sweep's metric.
        protected: elites that may lead and be tested but not be eliminated in this round.
    """
    failed = [c for c in survivors if any(v is None or not math.isfinite(v) for v in table[c][:n])]
    left = [c for c in survivors if c not in failed]
    gone = [Elimination(c, n, "failed") for c in failed]
    if n >= racing.first_test and len(left) > 1:
        beaten = [e for e in _beaten(table, left, n, racing, mode) if e.config not in protected]
        gone += beaten
        left = [c for c in left if c not in {e.config for e in beaten}]
    done = len(left) <= 1 or n >= racing.max_replicates
    why = "one survivor" if len(left) <= 1 else "max_replicates" if done else ""
    return Round(tuple(left), tuple(gone), done, why)


def leader(table: Mapping[str, Sequence[float | None]], configs: Sequence[str], n: int, mode: str = "max") -> str:
    """The configuration with the best mean over replicates 0 .. n-1 (the first on ties)."""
    sign = direction_sign(mode)
    return max(configs, key=lambda c: sign * _mean(table[c][:n]))


def _beaten(table: Mapping[str, Sequence[float | None]], configs: list[str], n: int, racing: Racing,
            mode: str) -> list[Elimination]:
    """The survivors the leader eliminates: "beaten" when its lead is beyond noise (margin 0, Holm),
    "no gain of δ" when only the indifference zone rules the survivor out."""
    best = leader(table, configs, n, mode)
    others = [c for c in configs if c != best]
    sign = direction_sign(mode)
    first = [sign * float(v) for v in table[best][:n] if v is not None]
    seconds = [[sign * float(v) for v in table[c][:n] if v is not None] for c in others]
    alpha = 1.0 - racing.confidence
    plain = [_p(first, values, 0.0) for values in seconds]
    zoned = [_p(first, values, racing.min_difference) for values in seconds]
    beaten, out = holm_rejections(plain, alpha), holm_rejections(zoned, alpha)
    return [Elimination(c, n, "beaten" if b else "no gain of δ", best, _mean(first) - _mean(values), p if b else q)
            for c, values, p, q, b, r in zip(others, seconds, plain, zoned, beaten, out) if b or r]


def _p(first: list[float], values: list[float], margin: float) -> float:
    p = margin_p_value(first, values, margin)
    return 1.0 if p is None else p


def _mean(values: Sequence[float | None]) -> float:
    xs = [float(v) for v in values if v is not None]
    return math.fsum(xs) / len(xs) if xs else -math.inf


# ----------------------------------------------------------------------------- one race, round by round


class Race:
    """One race's state: each configuration's values by replicate, the survivors, the rounds decided.

    ``carried`` configurations (an earlier race's elites) start with the values they have; every
    round asks only the survivors that lack the round's replicate (``pending``).
    """

    def __init__(self, racing: Racing, mode: str, configs: Sequence[str],
                 carried: Mapping[str, Sequence[float | None]] | None = None) -> None:
        carried = carried or {}
        self.racing, self.mode = racing, mode
        self.table: dict[str, list[float | None]] = {c: list(carried.get(c, ())) for c in configs}
        self.earned = {c: len(values) for c, values in carried.items() if c in self.table}  # elites' seeds
        self.survivors = list(configs)
        self.n = 0  # rounds decided
        self.eliminated: list[Elimination] = []

    def pending(self) -> list[str]:
        """The survivors that need a value for replicate index ``n`` (the next round's seed)."""
        return [c for c in self.survivors if len(self.table[c]) <= self.n]

    def record(self, values: Mapping[str, float | None]) -> None:
        """The next round's values of the pending configurations (None = failed or did not finish)."""
        for c in self.pending():
            self.table[c].append(values.get(c))

    def decide(self) -> Round:
        """Decide round ``n + 1`` (every survivor must have its value)."""
        self.n += 1
        protected = [c for c, seeds in self.earned.items() if seeds > self.n]
        step = decide(self.table, self.survivors, self.n, self.racing, self.mode, protected)
        self.survivors = list(step.survivors)
        self.eliminated += step.eliminated
        return step

    def leader(self) -> str:
        return leader(self.table, self.survivors, self.n, self.mode)


@dataclass(frozen=True)
class RaceOutcome:
    winner: str
    trials: int  # replicate runs the race paid for
    rounds: int
    eliminated: tuple[Elimination, ...]
    table: dict[str, list[float | None]]  # the values each configuration ran, by replicate


def replay(table: Mapping[str, Sequence[float]], racing: Racing, mode: str = "max") -> RaceOutcome:
    """Race the configurations of a finished table (values by replicate, in the order to race them).

    Round n gives every survivor its n-th value; the winner is the best survivor at the end.
    Raises:
        ValueError: a configuration has fewer values than ``racing.max_replicates``.
    """
    short = [c for c, values in table.items() if len(values) < racing.max_replicates]
    if short:
        raise ValueError(f"{short[0]}: {len(table[short[0]])} values, the race may need {racing.max_replicates}")
    race, trials = Race(racing, mode, list(table)), 0
    while True:
        todo = race.pending()
        trials += len(todo)
        race.record({c: table[c][race.n] for c in todo})
        if race.decide().finished:
            return RaceOutcome(race.leader(), trials, race.n, tuple(race.eliminated), race.table)
