"""Asynchronous successive halving over configurations: ASHA when each configuration runs K seeds.

ASHA (Li et al. 2020, *A System for Massively Parallel Hyperparameter Tuning*, MLSys) stops a
trial at a rung when its metric there falls below the top 1/eta (eta = ``reduction_factor``)
of what the trials that reached the rung before it recorded. With replicates (``search.replicates``) a configuration
is K trials, one per seed. Stopping each seed on its own keeps a configuration as long as any
of its seeds survives and leaves it a mean over the seeds its outcome spared; so here the
unit ASHA keeps or stops is the configuration:

- Rungs sit at ``grace_period * reduction_factor**i`` below ``max_t`` (time: the global
  iteration). A replicate's first report at or after a rung's milestone records its value
  there (a report that passes several rungs records it at each).
- Once all K replicates have recorded a rung, and not before, the configuration's mean over
  its K seeds is compared with the means recorded at that rung by the configurations decided
  there earlier. It is kept unless it is below their (1 - 1/eta) quantile (linear
  interpolation, as Ray Tune's ASHA), and its mean is recorded at the rung either way. So a
  configuration is always judged over the same seeds as the ones it is compared with.
- A failed replicate (a non-finite metric, or an error) stops its configuration at once; the
  configuration is recorded as the worst value at the lowest rung it had not been decided
  at, so that rung's cutoff counts it below every other configuration, as if it had reached
  the rung with the worst metric.
- A replicate of a stopped configuration is told to stop at its next report, and every
  replicate at ``max_t``.

With K = 1 this is Ray Tune's ``ASHAScheduler`` with one bracket, decision for decision, when
every rung gets a report (Ray records a report that jumps rungs at the highest one only) and
no trial fails (Ray records a failure only when its report lands on a rung not yet recorded).
Nothing here imports Ray; ``simtune.sweep.tuner.ConfigASHA`` applies the rule to Tune trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from simtune.schema import direction_sign

Action = Literal["continue", "stop"]
WORST = -math.inf  # a failed configuration's entry at a rung (values are oriented: higher is better)


@dataclass(frozen=True)
class Stop:
    """Where and why a configuration was stopped as a whole."""

    rung: float | None  # the milestone (iteration) it was stopped at; None: it failed after the last rung
    reason: Literal["cut", "failed"]  # cut: below the rung's cutoff; failed: a replicate failed
    values: dict[int, float] = field(default_factory=dict)  # replicate index -> metric at that rung ({} if failed)


def milestones(grace_period: float, max_t: float, reduction_factor: float) -> tuple[float, ...]:
    """The rungs' iterations, ascending: ``grace_period * reduction_factor**i`` below ``max_t``."""
    out: list[float] = []
    milestone = grace_period
    while milestone < max_t:
        out.append(int(milestone) if float(milestone).is_integer() else milestone)  # 8, not 8.0, in records
        milestone *= reduction_factor
    return tuple(out)


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation (numpy's default); -inf entries are
    the worst values, and an interpolation that involves one gives -inf (its limit)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    a, b, t = ordered[low], ordered[high], position - low
    if a == b or not math.isfinite(a):
        return a
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)  # numpy's two-sided lerp


class ConfigHalving:
    """ASHA's rungs, with configurations of K replicates as the unit kept or stopped.

    Configurations are named by any string (the sweep uses ``search.replicates.config_key``),
    replicates by their index 0..K-1.
    """

    def __init__(self, *, replicates: int, grace_period: float, max_t: float, reduction_factor: float,
                 mode: str = "max") -> None:
        if replicates < 1 or grace_period <= 0 or max_t < grace_period or reduction_factor <= 1:
            raise ValueError(f"replicates >= 1, 0 < grace_period <= max_t and reduction_factor > 1 must hold, but "
                             f"got replicates={replicates}, grace_period={grace_period}, max_t={max_t}, "
                             f"reduction_factor={reduction_factor}")
        self._sign = direction_sign(mode)
        self.replicates, self.max_t, self.mode = replicates, max_t, mode
        self.grace_period, self.reduction_factor = grace_period, reduction_factor
        self.milestones = milestones(grace_period, max_t, reduction_factor)
        self._rungs: list[list[float]] = [[] for _ in self.milestones]  # oriented means, in decision order
        self._values: dict[str, list[dict[int, float]]] = {}  # config -> per rung: replicate -> value
        self._decided: dict[str, int] = {}  # config -> rungs it was kept at
        self._stops: dict[str, Stop] = {}

    # ------------------------------------------------------------------------- reports

    def report(self, config: str, replicate: int, iteration: float, value: float) -> Action:
        """A replicate's result at ``iteration``: whether it goes on. A non-finite ``value`` is a failure."""
        if not 0 <= replicate < self.replicates:
            raise ValueError(f"replicate must be in 0..{self.replicates - 1}, but got {replicate}")
        if config in self._stops:
            return "stop"
        if not math.isfinite(value):
            self.fail(config)
            return "stop"
        rungs = self._values.setdefault(config, [{} for _ in self.milestones])
        for recorded, milestone in zip(rungs, self.milestones):
            if iteration >= milestone:
                recorded.setdefault(replicate, value)
        self._decide(config)
        return "stop" if config in self._stops or iteration >= self.max_t else "continue"

    def fail(self, config: str) -> None:
        """A replicate of ``config`` failed: stop the configuration, the worst at its next undecided rung."""
        if config in self._stops:
            return
        rung = self._decided.get(config, 0)
        if rung == len(self.milestones):
            self._stops[config] = Stop(None, "failed")
            return
        self._rungs[rung].append(WORST)
        self._stops[config] = Stop(self.milestones[rung], "failed")

    def _decide(self, config: str) -> None:
        """Every decision ``config``'s recorded rungs allow, lowest rung first, until one stops it."""
        rungs = self._values[config]
        while (rung := self._decided.get(config, 0)) < len(self.milestones) \
                and len(rungs[rung]) == self.replicates:
            mean = self._sign * statistics.fmean(rungs[rung].values())
            cut = self.cutoff(rung)
            self._rungs[rung].append(mean)
            if cut is not None and mean < cut:
                self._stops[config] = Stop(self.milestones[rung], "cut", dict(rungs[rung]))
                return
            self._decided[config] = rung + 1

    # ------------------------------------------------------------------------- state

    def cutoff(self, rung: int) -> float | None:
        """The oriented value a configuration must reach at ``rung`` (None while the rung is empty)."""
        recorded = self._rungs[rung]
        return quantile(recorded, 1 - 1 / self.reduction_factor) if recorded else None

    def stop(self, config: str) -> Stop | None:
        """How ``config`` was stopped; None while it runs (or once it reached ``max_t``)."""
        return self._stops.get(config)

    @property
    def stops(self) -> dict[str, Stop]:
        return dict(self._stops)

    def to_json(self) -> dict[str, Any]:
        """The whole state as strict JSON (a worst entry as null), for ``from_json``."""
        return {"replicates": self.replicates, "grace_period": self.grace_period, "max_t": self.max_t,
                "reduction_factor": self.reduction_factor, "mode": self.mode,
                "rungs": [[v if math.isfinite(v) else None for v in rung] for rung in self._rungs],
                "values": {c: [{str(k): v for k, v in r.items()} for r in rungs] for c, rungs in self._values.items()},
                "decided": dict(self._decided),
                "stops": {c: {"rung": s.rung, "reason": s.reason, "values": {str(k): v for k, v in s.values.items()}}
                          for c, s in self._stops.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfigHalving:
        """The rule in the state ``to_json`` wrote."""
        rule = cls(replicates=data["replicates"], grace_period=data["grace_period"], max_t=data["max_t"],
                   reduction_factor=data["reduction_factor"], mode=data["mode"])
        rule._rungs = [[WORST if v is None else v for v in rung] for rung in data["rungs"]]
        rule._values = {c: [{int(k): v for k, v in r.items()} for r in rungs] for c, rungs in data["values"].items()}
        rule._decided = dict(data["decided"])
        rule._stops = {c: Stop(s["rung"], s["reason"], {int(k): v for k, v in s["values"].items()})
                       for c, s in data["stops"].items()}
        return rule


# ----------------------------------------------------------------------------- the scheduler's record


def record(rule: ConfigHalving, trials: Mapping[str, tuple[str, int]]) -> dict[str, Any]:
    """What a scheduler keeps of the rule (``asha.json``): its state, and trial id -> (configuration, replicate)."""
    return {"trials": {trial: [config, k] for trial, (config, k) in trials.items()}, "rule": rule.to_json()}


def recorded_cuts(saved: Mapping[str, Any]) -> dict[str, tuple[float, dict[str, float]]]:
    """Configuration -> (rung, trial id -> metric at that rung) for every configuration a ``record``
    shows cut at a rung; a trial id per replicate the rung counted (two for a seed run twice)."""
    rule = ConfigHalving.from_json(saved["rule"])
    trials = {trial: (config, k) for trial, (config, k) in saved["trials"].items()}
    return {config: (stop.rung, {trial: stop.values[k] for trial, (c, k) in trials.items()
                                 if c == config and k in stop.values})
            for config, stop in rule.stops.items() if stop.reason == "cut" and stop.rung is not None}
