"""Replicates: every configuration of a sweep trained with the same K seeds (common random numbers).

With ``replicates: K`` a configuration (one set of swept values) runs as K Tune trials, the
*replicates*. Replicate k carries ``TRIAL_INDEX = k`` in its Tune config next to the swept
keys and trains with ``seed = base seed + k``; the base seed is the experiment's ``seed``
(after ``set:`` and ``--set``). Every configuration gets the same K seeds, so two
configurations can be compared seed by seed (paired), which removes the part of the noise
the seed moves in both alike.

How each search algorithm gets its replicates:

- ``grid``: ``TRIAL_INDEX`` is one more grid dimension, ``grid_search(range(K))``.
- ``random``: the same, with the variant generator's ``constant_grid_search``: the random
  values are drawn once per sample and held over the replicates (and over any ``grid`` values).
- ``optuna``: Ray Tune's ``Repeater`` proposes each of the searcher's configurations K times
  in a row and tells the searcher, once all K have ended, the mean of their metric (the last
  value each replicate reported). The searcher never sees single seeds.

With ASHA each replicate is a trial that a rung can stop. ``PairedASHA`` keeps one ASHA
bracket per replicate index, so at every rung a replicate is compared only with the other
configurations' replicates of the same seed. A configuration's replicates can end at
different rungs; ``simtune.sweep.results`` then summarises it over its replicates that
trained to the end (``n`` says how many).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

TRIAL_INDEX = "__trial_index__"  # the key Ray Tune's Repeater sets; simtune uses it for every algorithm


def replicate_index(params: Mapping[str, Any]) -> int:
    """k of a trial's Tune config (0 for a sweep without replicates)."""
    return int(params.get(TRIAL_INDEX, 0))


def swept_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's Tune config without the replicate index: the configuration it belongs to."""
    return {key: value for key, value in params.items() if key != TRIAL_INDEX}


def param_space(domains: dict[str, Any], replicates: int, searcher: bool) -> dict[str, Any]:
    """Tune's ``param_space``: the swept domains, plus the replicate grid unless a searcher is repeated."""
    from ray import tune

    if replicates == 1 or searcher:
        return dict(domains)
    return {**domains, TRIAL_INDEX: tune.grid_search(list(range(replicates)))}


def tune_num_samples(num_samples: int, replicates: int, searcher: bool) -> int:
    """Tune's ``num_samples``: a Repeater counts every replicate as a sample; grids multiply by themselves."""
    return num_samples * replicates if searcher else num_samples


def repeated(searcher: Any, replicates: int) -> Any:
    """A Tune searcher wrapped in a ``Repeater`` when K > 1: each proposal runs K times."""
    if replicates == 1:
        return searcher
    from ray.tune.search import Repeater

    return Repeater(searcher, repeat=replicates, set_index=True)


def paired_asha(replicates: int, **asha_args: Any) -> Any:
    """An ASHA scheduler that races each replicate index separately (see the module docstring)."""
    from ray.tune.schedulers import ASHAScheduler

    class PairedASHA(ASHAScheduler):  # type: ignore[misc]
        """ASHA with one bracket per replicate index: rungs compare seed k only with seed k."""

        def __init__(self) -> None:
            super().__init__(brackets=1, **asha_args)
            self._by_replicate = [self._brackets[0], *(copy.deepcopy(self._brackets[0])
                                                       for _ in range(replicates - 1))]

        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            super().on_trial_add(tune_controller, trial)  # checks metric and mode
            index = replicate_index(trial.config or {}) % len(self._by_replicate)
            self._trial_info[trial.trial_id] = self._by_replicate[index]

        def debug_string(self) -> str:
            brackets = "\n".join(f"seed offset {k}: {b.debug_str()}" for k, b in enumerate(self._by_replicate))
            return f"Using AsyncHyperBand per replicate: num_stopped={self._num_stopped}\n{brackets}"

    if replicates == 1:
        return ASHAScheduler(**asha_args)
    return PairedASHA()
