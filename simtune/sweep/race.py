"""A racing sweep on Ray: one Tune round per seed, over the configurations still in the race.

Grid and random search run one race over their configurations; Optuna runs races one after the
other, each over its new proposals and the previous race's survivors (the loop:
``simtune.search.races.run_races``). Round r runs every survivor that lacks the race's next
seed (replicate index n - 1 in the race's n-th round: seed = base seed + n - 1) as its own
Tune experiment in ``<sweep>/race/roundNN/`` (r counts over all races); trials keep their run
directories in ``<sweep>/runs/`` like any sweep. After each round the racing rule
(``simtune.search.racing``) drops the configurations the leader beats (or that failed), and
``race.json`` records every race's proposals and every round's decision.

A killed driver resumes (``--resume``) from what is on disk: the recorded proposals are raced
again, finished rounds are read back through Tune (their trials are not run again), the round
in progress is restored (its finished trials are kept) and the race goes on from there. A
resumed Optuna search is told the same values, but TPE's later proposals need not be the ones
the uninterrupted driver would have made.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from simtune.search.replicates import config_key
from simtune.results.sweepdir import SweepDir
from simtune.rundir import read_json, write_json
from simtune.search.races import run_races
from simtune.search.space import SearchSpace
from simtune.sweep.options import SweepOptions
from simtune.sweep.summarize import trial_summary
from simtune.search.replicates import TRIAL_INDEX
from simtune.sweep.jobs.shared import share_first
from simtune.sweep.tuner import build_round_tuner


def run_race(space: SearchSpace, options: SweepOptions, callbacks: list[Any]) -> dict[str, Any]:
    """Race the space's configurations round by round on Tune; returns ``race.json``."""
    folder = SweepDir(options.sweep_dir)
    earlier = (read_json(folder.race) or {}).get("races", []) if options.resume else []

    def run_round(number: int, configurations: list[dict[str, Any]], replicate: int) -> dict[str, float | None]:
        round_dir = folder.race_round(number)
        share_first(space, options, [space.config_for({**values, TRIAL_INDEX: replicate}) for values in configurations])
        build_round_tuner(space, options, callbacks, round_dir, configurations, replicate).fit()
        return round_values(space, round_dir)

    return run_races(space, run_round, lambda record: write_json(folder.race, record), earlier,
                     say=lambda line: print(f"simtune sweep: {line}", file=sys.stderr))


def round_values(space: SearchSpace, round_dir: Path) -> dict[str, float | None]:
    """Configuration -> the selection metric of its trial in this round; None when it failed or did not finish."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(str(round_dir), default_metric=space.metric, default_mode=space.mode)
    out: dict[str, float | None] = {}
    for trial in analysis.trials:
        t = trial_summary(space, round_dir.parent.parent, trial)
        value = t.metrics.get(space.metric) if t.status == "TERMINATED" else None
        out[config_key(t.params)] = None if value is None else float(value)
    return out
