"""A racing sweep's races: where their configurations come from, and the loop over them.

Grid and random search race one fixed set (``SearchSpace.configurations``) in one race.
Optuna races the way irace iterates (López-Ibáñez et al. 2016): TPE proposes
``racing.batch`` new configurations, they race together with the survivors (elites) of the
previous race, which keep the seeds they have, and when the race ends TPE is told every new
configuration's mean over the seeds it ran, with that number of seeds as the trial's
``n_seeds`` attribute. A configuration that failed is told as the worst value (-inf when
higher is better). This repeats until ``num_samples`` configurations were proposed.

``run_races`` is the loop: it proposes, races round by round (``racing.Race``) and tells, and
records every decision; how a round's trials run is given to it (``simtune.sweep.race`` runs
them on Tune; no Ray here).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal, Protocol

from simtune.schema import direction_sign
from simtune.search.replicates import config_key
from simtune.search.racing import Race, Round
from simtune.search.space import Param, SearchSpace
from simtune.stats import fit_additive

DUPLICATE_ASKS = 20  # asks per wanted configuration before a space of few values counts as exhausted


class Proposals(Protocol):
    """A source of configurations for successive races."""

    def propose(self, recorded: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The next race's new configurations ([] when there are no more); ``recorded`` are the ones an
        interrupted driver proposed for this race, to be raced again as they were."""
        ...

    def tell(self, key: str, values: Sequence[float | None]) -> None:
        """A configuration (``config_key``) left the race with these values by replicate."""
        ...


class FixedProposals:
    """Every configuration of a grid or random search, in the first race."""

    def __init__(self, space: SearchSpace) -> None:
        self._configs: list[dict[str, Any]] | None = space.configurations()

    def propose(self, recorded: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        configs, self._configs = self._configs or [], None
        return configs

    def tell(self, key: str, values: Sequence[float | None]) -> None:
        """A fixed set learns nothing."""


class OptunaProposals:
    """TPE (``search.seed``) proposing ``racing.batch`` configurations per race, ``num_samples`` in all.

    TPE is told each configuration's *seed-adjusted* estimate (``stats.fit_additive`` over every
    seed of every configuration raced so far), never its raw mean: configurations leave a race
    after different numbers of seeds, and a raw mean over two lucky seeds would look better than
    the winner's over ten. Estimates move as seeds arrive, and Optuna cannot change a value it was
    told, so each race's proposals come from a fresh study holding every configuration at its
    current estimate (a failed one at the worst value): the history TPE models is re-told.
    """

    def __init__(self, space: SearchSpace) -> None:
        import optuna

        assert space.racing is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._space, self._batch, self._left = space, space.racing.batch, space.num_samples
        self._distributions = {key: distribution(param) for key, param in space.params.items()}
        self._params: dict[str, dict[str, Any]] = {}  # config_key -> its swept values, every one proposed
        self._values: dict[str, list[float | None]] = {}  # config_key -> its values by replicate, once raced
        self._races = 0

    def propose(self, recorded: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        told = self.told()
        study = self._study(told)
        for params in recorded or (self._space.search.points_to_evaluate if self._races == 0 else ()):
            study.enqueue_trial(dict(params))
        self._races += 1
        wanted = len(recorded) if recorded else min(self._batch, self._left)
        configs: list[dict[str, Any]] = []
        for _ in range(wanted * DUPLICATE_ASKS):
            if len(configs) == wanted:
                break
            trial = study.ask(self._distributions)
            params = {key: trial.params[key] for key in self._space.params}
            key = config_key(params)
            if key in self._params:
                _tell_duplicate(study, trial, told.get(key))
                continue
            self._params[key] = params
            configs.append(params)
        self._left -= len(configs)
        return configs

    def tell(self, key: str, values: Sequence[float | None]) -> None:
        self._values[key] = list(values)

    def told(self) -> dict[str, float]:
        """Config key -> the value TPE is told now: its seed-adjusted estimate, the worst when it failed."""
        failed = {key for key, values in self._values.items()
                  if not values or any(v is None or not math.isfinite(v) for v in values)}
        fit = fit_additive({key: dict(enumerate(float(v) for v in values if v is not None))
                            for key, values in self._values.items() if key not in failed})
        return {key: worst(self._space.mode) if key in failed else fit.estimates[key].value for key in self._values}

    def _study(self, told: Mapping[str, float]) -> Any:
        """A study holding every raced configuration at the value it is told (``told``)."""
        import optuna
        from optuna.trial import create_trial

        direction: Literal["maximize", "minimize"] = "maximize" if self._space.mode == "max" else "minimize"
        sampler = optuna.samplers.TPESampler(seed=race_seed(self._space.search.seed, self._races))
        study = optuna.create_study(direction=direction, sampler=sampler)
        for key, value in told.items():
            study.add_trial(create_trial(params=self._params[key], distributions=self._distributions, value=value,
                                         user_attrs={"n_seeds": len(self._values[key])}))
        return study


def race_seed(seed: int | None, race: int) -> int | None:
    """TPE's seed for race ``race`` (0-based), derived from ``search.seed`` (None: unseeded)."""
    import numpy as np

    return None if seed is None else int(np.random.SeedSequence((seed, race)).generate_state(1)[0])


def _tell_duplicate(study: Any, trial: Any, value: float | None) -> None:
    """TPE proposed a configuration it already has: tell it the known value, or nothing (FAIL) yet."""
    from optuna.trial import TrialState

    if value is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)


def proposals_for(space: SearchSpace) -> Proposals:
    """The proposals of a racing sweep: Optuna's, or the fixed set of grid and random search."""
    return OptunaProposals(space) if space.search.algorithm == "optuna" else FixedProposals(space)


def distribution(param: Param) -> Any:
    """The Optuna distribution of a swept key (``randint``: both ends included, as in Optuna)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.kind in ("grid", "choice"):
        return CategoricalDistribution(list(param.values))
    low, high = param.values
    if param.kind == "randint":
        return IntDistribution(int(low), int(high))
    return FloatDistribution(float(low), float(high), log=param.kind == "loguniform")


def worst(mode: str) -> float:
    """The value a failed configuration is told: the worst there is."""
    return -direction_sign(mode) * math.inf


# ----------------------------------------------------------------------------- the loop

RunRound = Callable[[int, list[dict[str, Any]], int], dict[str, float | None]]
"""(round number, configurations, replicate index) -> config_key -> its metric (None = failed)."""


def run_races(space: SearchSpace, run_round: RunRound, save: Callable[[dict[str, Any]], None],
              earlier: Sequence[dict[str, Any]] = (), say: Callable[[str], None] = print) -> dict[str, Any]:
    """Race the space's configurations in as many races as its proposals need; returns the record.

    Args:
        run_round: trains the given configurations with one replicate index (round numbers
            count over all races, from 1); returns each one's selection metric.
        save: called with the record (``race.json``) after every change; races of ``earlier`` not
            raced again yet stay in it, so a driver killed twice still resumes on them.
        earlier: the ``races`` of an interrupted driver's record: their proposals are raced again.
        say: one line per round and per race after the first.
    """
    assert space.racing is not None
    def save_record(record: dict[str, Any]) -> None:  # recorded proposals stay until raced again (a second kill)
        save({**record, "races": [*record["races"], *earlier[len(record["races"]):]]})

    proposals = proposals_for(space)
    record: dict[str, Any] = {"racing": asdict(space.racing), "metric": space.metric, "mode": space.mode,
                              "algorithm": space.search.algorithm, "configurations": [], "races": [],
                              "rounds": []}
    elites: dict[str, list[float | None]] = {}
    while new := proposals.propose(_recorded(earlier, len(record["races"]))):
        record["configurations"] += new
        record["races"].append({"race": len(record["races"]) + 1, "proposed": new, "carried": list(elites)})
        save_record(record)
        if len(record["races"]) > 1:
            say(_race_line(record["races"][-1], space.search.algorithm))
        race = Race(space.racing, space.mode, [*elites, *map(config_key, new)], carried=elites)
        _race_rounds(race, run_round, record, save_record, say)
        for key, values in race.table.items():
            proposals.tell(key, values)
        elites = {c: race.table[c] for c in race.survivors}
    return record


def _race_rounds(race: Race, run_round: RunRound, record: dict[str, Any], save: Callable[[dict[str, Any]], None],
                 say: Callable[[str], None]) -> None:
    """Round after round of one race until its rule ends it, each round recorded."""
    params = {config_key(c): c for c in record["configurations"]}
    while True:
        todo, entered = race.pending(), list(race.survivors)
        number = len(record["rounds"]) + 1
        if todo:
            race.record(run_round(number, [params[c] for c in todo], race.n))
        step = race.decide()
        record["rounds"].append({"round": number, "race": len(record["races"]), "replicate": race.n - 1,
                                 "entered": entered, "trained": todo, "survivors": list(step.survivors),
                                 "eliminated": [asdict(e) for e in step.eliminated], "finished": step.finished,
                                 "why": step.why})
        save(record)
        say(_round_line(number, race.n, entered, step))
        if step.finished:
            return


def _recorded(races: Sequence[dict[str, Any]], index: int) -> list[dict[str, Any]] | None:
    """What an interrupted driver proposed for race ``index`` (0-based), or None past its record."""
    return list(races[index]["proposed"]) if index < len(races) else None


def _round_line(number: int, n: int, entered: list[str], step: Round) -> str:
    """Who raced in a round, who left and why."""
    gone = "; ".join(f"{label(e.config)} ({e.reason}" + (f": leader {label(e.leader)} ahead by {e.difference:.2f}, "
                                                        f"p = {e.p_value:.3f})" if e.leader else ")")
                     for e in step.eliminated) or "none"
    end = f"; race over ({step.why})" if step.finished else ""
    return f"racing round {number} (seed index {n - 1}): {len(entered)} raced, eliminated: {gone}{end}"


def _race_line(race: dict[str, Any], algorithm: str) -> str:
    carried = ", ".join(label(c) for c in race["carried"]) or "none"
    return f"race {race['race']}: {len(race['proposed'])} new configurations from {algorithm}, carried over: {carried}"


def label(key: str | None) -> str:
    """``lambda_ci=0.1, bank_size=50`` for a configuration key (the last part of each swept key)."""
    values = json.loads(key) if key else {}
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                     for k, v in values.items())
