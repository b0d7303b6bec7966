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

Ray is not imported here: ``simtune.sweep.tuner`` turns these rules into Tune objects.

With ASHA (``scheduler.type: asha``) the unit a rung keeps or stops is the configuration, not
the trial (``simtune.search.halving``, applied by ``simtune.sweep.tuner.ConfigASHA``): once all
K replicates have reached a rung, the configuration's mean over its K seeds is compared with
the means the configurations before it recorded there, and all its replicates go on or stop
together. ``simtune.results.ranking`` then judges a configuration stopped at a rung by its
mean there over its K seeds, and ranks it after the configurations trained to the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

TRIAL_INDEX = "__trial_index__"  # the key Ray Tune's Repeater sets; simtune uses it for every algorithm


def replicate_index(params: Mapping[str, Any]) -> int:
    """k of a trial's Tune config (0 for a sweep without replicates)."""
    return int(params.get(TRIAL_INDEX, 0))


def config_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's Tune config without the replicate index: the configuration it belongs to."""
    return {key: value for key, value in params.items() if key != TRIAL_INDEX}


def config_key(values: Mapping[str, Any]) -> str:
    """A configuration's identity: its swept values as sorted JSON (without the replicate index)."""
    return json.dumps(dict(values), sort_keys=True, default=str)


def replicate_seed(base_seed: int, index: int) -> int:
    """The seed replicate ``index`` trains with: ``base_seed + index``, the same for every configuration."""
    return base_seed + index


def fresh_seeds(used: Iterable[int], count: int, first: int | None = None) -> list[int]:
    """``count`` consecutive seeds that no trial in ``used`` trained with.

    They start one past the largest used seed, or at ``first`` (refused when the range would
    include a used seed): a confirmation on fresh seeds does not re-run what a selection saw.
    Raises:
        ValueError: ``count`` < 1, or ``first`` gives a range that overlaps ``used``.
    """
    used = set(used)
    if count < 1:
        raise ValueError(f"count must be >= 1, but got {count}")
    start = max(used, default=-1) + 1 if first is None else first
    seeds = list(range(start, start + count))
    reused = sorted(used.intersection(seeds))
    if reused:
        raise ValueError(f"seeds {seeds[0]}-{seeds[-1]} include seed(s) {', '.join(map(str, reused))} the sweep "
                         f"already trained with; start at {max(used) + 1} or later")
    return seeds
